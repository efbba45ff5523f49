"""`qflow start`: dispatches outlive the client; `qflow stop` leaves nothing behind."""

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest

pytestmark = [pytest.mark.service, pytest.mark.slow]

CLIENT = textwrap.dedent("""
    import time, qflow
    @qflow.electron
    def slow(x):
        time.sleep(3)
        return x * 10
    @qflow.lattice
    def flow(x):
        return slow(x)
    print(qflow.dispatch(flow)(4))
""")

READER = textwrap.dedent("""
    import sys, qflow
    res = qflow.get_result(sys.argv[1], wait=True, timeout=120)
    print(res.status, res.result)
""")


def _run(args, env, timeout=180):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dispatch_outlives_client(tmp_path):
    """A dispatch keeps running after its client exits; any process can read it, and
    the UI started beside the head (`--ui`) shows it and stops with it."""
    import urllib.request

    env = {**os.environ, "QFLOW_HOME": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    qflow_cli = [sys.executable, "-m", "qflow.cli"]
    ui_port = _free_port()
    started = _run([*qflow_cli, "start", "--num-cpus", "2", "--ui", "--ui-port", str(ui_port)],
                   env)
    assert started.returncode == 0, started.stderr[-3000:]
    assert f"qflow UI at http://127.0.0.1:{ui_port}/" in started.stdout
    state = json.loads((tmp_path / "service.json").read_text())
    try:
        status = _run([*qflow_cli, "status"], env).stdout
        assert "running: pid" in status and f"UI: http://127.0.0.1:{ui_port}/" in status
        again = _run([*qflow_cli, "start"], env)
        assert again.returncode == 1 and "already running" in again.stderr

        client = _run([sys.executable, "-c", CLIENT], env)
        assert client.returncode == 0, client.stderr[-3000:]
        dispatch_id = client.stdout.strip().splitlines()[-1]
        reader = _run([sys.executable, "-c", READER, dispatch_id], env)
        assert reader.stdout.strip().splitlines()[-1] == "COMPLETED 40", reader.stderr[-3000:]
        with urllib.request.urlopen(
                f"http://127.0.0.1:{ui_port}/api/dispatches/{dispatch_id}", timeout=10) as r:
            assert json.loads(r.read())["result_text"] == "40"
    finally:
        stopped = _run([*qflow_cli, "stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    procs = []
    for pid in [*state["pids"], state["ui_pid"]]:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    assert not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not (tmp_path / "service.json").exists()
    assert "not running" in _run([*qflow_cli, "status"], env).stdout
