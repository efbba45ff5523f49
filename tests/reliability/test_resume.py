"""The `qflow start` service resumes unfinished dispatches: after its process is
killed (Ray restarts it), and after `qflow stop` then `qflow start`."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.reliability.helpers import QFLOW, env_for, printed_id, run, script

pytestmark = [pytest.mark.service, pytest.mark.slow]

DISPATCH = """
    import sys, time, qflow
    marks = sys.argv[1]
    @qflow.electron
    def step(name, seconds, after=None):
        with open(f"{marks}/{name}", "a") as f:
            f.write("x")
        time.sleep(seconds)
        return name
    @qflow.lattice
    def flow():
        a = step("a", 0.2)
        b = step("b", 6, a)
        return step("c", 0.1, b)
    dispatch_id = qflow.dispatch(flow)()
    while True:
        nodes = qflow.get_result(dispatch_id).get_all_node_results()
        # step a is node 0, step b node 3 (1, 2, 4 and 5 are their literal arguments)
        if nodes[0]["status"] == "COMPLETED" and nodes[3]["status"] == "RUNNING":
            break
        time.sleep(0.05)
    print("ID", dispatch_id)
"""

WAIT = """
    import sys, qflow
    res = qflow.get_result(sys.argv[1], wait=True, timeout=float(sys.argv[2]))
    print("STATUS", res.status, res.result)
"""


def _runs(marks, name):
    path = marks / name
    return len(path.read_text()) if path.exists() else 0


def _start(env):
    out = run([*QFLOW, "start", "--num-cpus", "2"], env)
    assert out.returncode == 0, out.stderr[-3000:]


def test_killed_service_process_is_restarted_and_resumes(tmp_path):
    env, marks = env_for(tmp_path / "home"), tmp_path / "marks"
    marks.mkdir()
    _start(env)
    try:
        state = json.loads((tmp_path / "home" / "service.json").read_text())
        out = run([*script(DISPATCH), str(marks)], env)
        dispatch_id = printed_id(out)
        os.kill(state["service_pid"], signal.SIGKILL)
        done = run([*script(WAIT), dispatch_id, "120"], env, timeout=200)
        assert "STATUS COMPLETED c" in done.stdout, done.stderr[-3000:]
        assert _runs(marks, "a") == 1, "a completed node ran again"
        assert _runs(marks, "b") in (1, 2) and _runs(marks, "c") == 1
        new = json.loads((tmp_path / "home" / "service.json").read_text())
        assert new["service_pid"] != state["service_pid"]
        assert "running:" in run([*QFLOW, "status"], env).stdout
    finally:
        run([*QFLOW, "stop"], env)


def test_stop_then_start_resumes(tmp_path):
    env, marks = env_for(tmp_path / "home"), tmp_path / "marks"
    marks.mkdir()
    _start(env)
    try:
        out = run([*script(DISPATCH), str(marks)], env)
        dispatch_id = printed_id(out)
        assert run([*QFLOW, "stop"], env).returncode == 0
        paused = run([*script(WAIT), dispatch_id, "60"], env)
        assert "is paused" in paused.stderr and "qflow start" in paused.stderr, paused
        _start(env)
        done = run([*script(WAIT), dispatch_id, "120"], env, timeout=200)
        assert "STATUS COMPLETED c" in done.stdout, done.stderr[-3000:]
        assert _runs(marks, "a") == 1 and _runs(marks, "c") == 1
    finally:
        run([*QFLOW, "stop"], env)


def test_paused_dispatch_can_be_cancelled(tmp_path):
    env, marks = env_for(tmp_path / "home"), tmp_path / "marks"
    marks.mkdir()
    _start(env)
    out = run([*script(DISPATCH), str(marks)], env)
    dispatch_id = printed_id(out)
    run([*QFLOW, "stop"], env)
    cancelled = run([*QFLOW, "cancel", dispatch_id], env)
    assert "its qflow head is not running" in cancelled.stdout, cancelled
    done = run([*script(WAIT), dispatch_id, "10"], env)
    assert "STATUS CANCELLED" in done.stdout, done.stderr[-3000:]
    _start(env)  # nothing left to resume
    try:
        time.sleep(2)
        assert "STATUS CANCELLED" in run([*script(WAIT), dispatch_id, "10"], env).stdout
        assert _runs(marks, "c") == 0
    finally:
        run([*QFLOW, "stop"], env)
