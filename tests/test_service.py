"""`qflow start`: dispatches outlive the client; `qflow stop` leaves nothing behind."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.conftest import debian_program

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


OWN_RAY = textwrap.dedent("""
    import ray, qflow
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    @qflow.electron
    def one():
        return 1
    @qflow.lattice
    def flow():
        return one()
    try:
        qflow.dispatch(flow)()
        print("DISPATCHED")
    except qflow.QflowError as exc:
        print("ERROR", str(exc).replace(chr(10), " "))
""")


def _another_user_is_refused(ui):
    """The store is 0700: a loopback UI must not open it to the machine's other users."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to make a request as user nobody")
    curl = debian_program("curl")
    probe = ["runuser", "-u", "nobody", "--", curl, "-s", "-w", "\n%{http_code}"]
    for path in ("/", "/api/dispatches"):
        out = _run([*probe, ui + path], os.environ)
        assert out.returncode == 0, out.stderr
        assert out.stdout.rsplit("\n", 1)[1] == "401", out.stdout
        assert "csrf" not in out.stdout.lower()


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
    started = _run([*qflow_cli, "start", "--num-cpus", "2", "--ui", "--ui-port", str(ui_port)], env)
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
        # A script that started a Ray of its own first is told so, with both addresses.
        other = _run([sys.executable, "-c", OWN_RAY], env)
        said = other.stdout.strip().splitlines()[-1] if other.stdout.strip() else ""
        assert said.startswith("ERROR This process is connected to the Ray at"), (
            other.stdout,
            other.stderr[-3000:],
        )
        assert state["address"] in said and "dispatcher service is gone" not in said
        ui = f"http://127.0.0.1:{ui_port}"
        token = state["ui_url"].split("?token=", 1)[1]
        auth = {"Authorization": f"Bearer {token}"}

        def call(path, body=None, headers=None):
            req = urllib.request.Request(
                ui + path,
                headers={**auth, **(headers or {})},
                data=None if body is None else json.dumps(body).encode(),
            )
            with urllib.request.urlopen(req, timeout=150) as r:
                return r.read().decode()

        assert json.loads(call(f"/api/dispatches/{dispatch_id}"))["result_text"] == "40"
        _another_user_is_refused(ui)
        # A redispatch from the UI is handed to the head's service: the UI never joins Ray.
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', call("/")).group(1)
        again = json.loads(
            call(
                f"/api/dispatches/{dispatch_id}/redispatch",
                {"reuse": False},
                {"X-CSRF-Token": csrf, "Content-Type": "application/json"},
            )
        )
        reader = _run([sys.executable, "-c", READER, again["dispatch_id"]], env)
        assert reader.stdout.strip().splitlines()[-1] == "COMPLETED 40", reader.stderr[-3000:]
        slow = _run([sys.executable, "-c", CLIENT], env).stdout.strip().splitlines()[-1]
        assert json.loads(call(f"/api/dispatches/{slow}/cancel", {}, {"X-CSRF-Token": csrf})) == {
            "cancelled": slow
        }
        reader = _run([sys.executable, "-c", READER, slow], env)
        assert reader.stdout.strip().splitlines()[-1].startswith("CANCELLED"), reader.stderr
        ui_proc = psutil.Process(state["ui_pid"])
        assert not [c for c in ui_proc.children(recursive=True) if c.is_running()]
        head_port = int(state["address"].rsplit(":", 1)[1])
        assert not [c for c in ui_proc.net_connections() if c.raddr and c.raddr.port == head_port]
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
