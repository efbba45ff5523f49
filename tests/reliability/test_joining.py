"""qflow joins only the Ray the user chose, never one found by scanning."""

from __future__ import annotations

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


def test_announced_ray_start_head_is_joined(tmp_path):
    """A head from `ray start --head` (announced in Ray's address file) is joined."""
    import shutil
    import subprocess
    import tempfile

    from qflow._cluster import ray_cli
    from qflow.service import _free_port

    # A private (short: Ray's socket paths are limited) temp dir: the address file in it
    # is this head's alone, so nothing else on the machine sees or is disturbed by it.
    temp = tempfile.mkdtemp(prefix="qrt")
    env = env_for(tmp_path, RAY_TMPDIR=temp)
    for _ in range(3):  # a free port can be taken before the head binds it: try another
        port = _free_port()
        head = subprocess.run([ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=1",
                               "--include-dashboard=false", "--disable-usage-stats"], env=env,
                              capture_output=True, text=True, timeout=120)
        if head.returncode == 0 or "Failed to start GCS" not in head.stderr:
            break
        _stop_head(temp)
    assert head.returncode == 0, head.stderr[-3000:]
    try:
        out = run(script("""
            import ray, qflow
            @qflow.lattice
            def flow():
                return 1
            print("RESULT", qflow.dispatch_sync(flow)().result)
            print("GCS", ray.get_runtime_context().gcs_address)
        """), env)
        assert "RESULT 1" in out.stdout, out.stderr[-3000:]
        assert out.stdout.split("GCS ", 1)[1].split()[0].endswith(f":{port}")
    finally:
        _stop_head(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_head(temp: str) -> None:
    """Stop only that head's processes (never `ray stop`, which stops every Ray here)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except psutil.Error:
            pass
