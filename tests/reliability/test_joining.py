"""qflow joins only the Ray the user chose, never one found by scanning."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile

import pytest

from tests.reliability.helpers import env_for, read_line, run, script, spawn

pytestmark = pytest.mark.slow

FIRST = """
    import ray, time, qflow
    @qflow.lattice
    def flow():
        return 1
    qflow.dispatch_sync(flow)()
    print("GCS", ray.get_runtime_context().gcs_address, flush=True)
    time.sleep(4)
"""

SECOND = """
    import sys, time, ray, qflow
    @qflow.electron
    def slow(x):
        time.sleep(8)
        return x + 1
    @qflow.lattice
    def flow(x):
        return slow(x)
    res = qflow.dispatch_sync(flow)(1)
    print("GCS", ray.get_runtime_context().gcs_address)
    print("RESULT", res.status, res.result)
"""


def test_two_embedded_scripts_each_get_their_own_ray(tmp_path):
    """B starts while A's embedded Ray runs, A exits first, and B still completes.

    (The test session's own Ray is running too: a third cluster neither may join.)
    """
    env = env_for(tmp_path)
    first = spawn(FIRST, env)
    try:
        gcs_a = read_line(first, "GCS ")
        second = run(script(SECOND), env, timeout=240)
    finally:
        first.kill()
        first.communicate()
    assert "RESULT COMPLETED 2" in second.stdout, second.stderr[-3000:]
    gcs_b = second.stdout.split("GCS ", 1)[1].split()[0]
    assert gcs_b != gcs_a
    import ray

    assert gcs_b != ray.get_runtime_context().gcs_address


@contextlib.contextmanager
def _ray_start_head(tmp_path):
    """A head from `ray start --head` in a private (short: Ray's socket paths are
    limited) temp dir, whose address file is this head's alone, so nothing else on the
    machine sees or is disturbed by it. Yields the scripts' environment and the port."""
    from qflow._cluster import ray_cli
    from qflow.service import _free_port

    temp = tempfile.mkdtemp(prefix="qrt")
    env = env_for(tmp_path, RAY_TMPDIR=temp)
    for _ in range(3):  # a free port can be taken before the head binds it: try another
        port = _free_port()
        head = subprocess.run(
            [
                ray_cli(),
                "start",
                "--head",
                f"--port={port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if head.returncode == 0 or "Failed to start GCS" not in head.stderr:
            break
        _stop_head(temp)
    assert head.returncode == 0, head.stderr[-3000:]
    try:
        yield env, port, temp
    finally:
        _stop_head(temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_announced_ray_start_head_is_joined(tmp_path):
    """A head from `ray start --head` (announced in Ray's address file) is joined."""
    with _ray_start_head(tmp_path) as (env, port, _):
        out = run(
            script("""
            import ray, qflow
            @qflow.lattice
            def flow():
                return 1
            print("RESULT", qflow.dispatch_sync(flow)().result)
            print("GCS", ray.get_runtime_context().gcs_address)
        """),
            env,
        )
        assert "RESULT 1" in out.stdout, out.stderr[-3000:]
        assert out.stdout.split("GCS ", 1)[1].split()[0].endswith(f":{port}")


def test_a_stopped_head_ends_the_dispatch_with_the_reason(tmp_path):
    """The head a script joined is stopped mid-dispatch: the dispatch ends FAILED saying
    so, within seconds, before Ray itself ends the script (a minute after losing it)."""
    with _ray_start_head(tmp_path) as (env, port, temp):
        proc = spawn(
            """
            import time, qflow
            @qflow.electron
            def slow():
                time.sleep(120)
            @qflow.lattice
            def flow():
                return slow()
            dispatch_id = qflow.dispatch(flow)()
            while qflow.get_result(dispatch_id).get_node_result(0)["status"] != "RUNNING":
                time.sleep(0.1)
            print("RUNNING", dispatch_id, flush=True)
            t0 = time.monotonic()
            res = qflow.get_result(dispatch_id, wait=True, timeout=50)
            # One line: a second could wait unread in the reader's buffer.
            print("ENDED", res.status, round(time.monotonic() - t0),
                  res.error.replace(chr(10), " "), flush=True)
        """,
            env,
        )
        try:
            dispatch_id = read_line(proc, "RUNNING ", timeout=120).strip()
            _stop_head(temp)
            status, seconds, error = read_line(proc, "ENDED ", timeout=60).split(" ", 2)
        finally:
            proc.kill()
            proc.communicate(timeout=30)
    assert status == "FAILED", error
    assert int(seconds) < 45, seconds  # the watch's 10 s, not Ray's minute
    assert f":{port} stopped answering" in error, error
    assert "redispatch" in error
    out = run(
        script(f"""
        import qflow
        res = qflow.get_result({dispatch_id!r})
        print("STORED", res.status, res.get_node_result(0)["status"])
    """),
        env_for(tmp_path),
    )
    assert "STORED FAILED CANCELLED" in out.stdout, out.stderr[-3000:]


def _stop_head(temp: str) -> None:
    """Stop only that head's processes (never `ray stop`, which stops every Ray here)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except psutil.Error:
            pass
