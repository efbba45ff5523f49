"""Cancelling and redispatching."""

import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

import qflow
from qflow.exceptions import QflowInputError


@qflow.electron
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@qflow.electron
def after(x):
    return x + 1


@qflow.electron
def sleepy_marker(path, seconds):
    time.sleep(seconds)
    pathlib.Path(path).write_text("finished")
    return seconds


@qflow.lattice
def long_flow(seconds):
    return after(sleepy(seconds))


def _wait_running(dispatch_id, node_id=0, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if qflow.get_result(dispatch_id).get_node_result(node_id)["status"] == "RUNNING":
            return
        time.sleep(0.05)
    raise AssertionError("node never started")


class TestCancel:
    def test_cancel_is_immediate_and_stops_ray_task(self, tmp_path):
        """The status is CANCELLED at once, and the running task is stopped."""
        marker = tmp_path / "marker"

        @qflow.lattice
        def flow(path, seconds):
            return after(sleepy_marker(path, seconds))

        dispatch_id = qflow.dispatch(flow)(str(marker), 3)
        _wait_running(dispatch_id)
        t0 = time.monotonic()
        qflow.cancel(dispatch_id)
        assert qflow.get_result(dispatch_id, status_only=True)["status"] == "CANCELLED"
        res = qflow.get_result(dispatch_id, wait=True, timeout=30)
        assert time.monotonic() - t0 < 30
        assert res.status == "CANCELLED" and res.result is None
        assert res.get_node_result(0)["status"] == "CANCELLED"
        # nodes 1 and 2 are the literal arguments; 3 is after()
        assert res.get_node_result(3)["status"] == "CANCELLED"
        assert res.get_node_result(3)["output"] is None
        time.sleep(4)
        assert not marker.exists(), "the Ray task was not cancelled"

    def test_cancel_some_nodes(self):
        """Cancelling task_ids stops those nodes and their dependants only."""

        @qflow.lattice
        def flow():
            return after(sleepy(60)), after(sleepy(0.2))

        dispatch_id = qflow.dispatch(flow)()
        _wait_running(dispatch_id)
        qflow.cancel(dispatch_id, task_ids=[0])
        res = qflow.get_result(dispatch_id, wait=True, timeout=60)
        nodes = res.get_all_node_results()
        # sleepy, 60, after | sleepy, 0.2, after | the return value (never built)
        assert [n["status"] for n in nodes] == [
            "CANCELLED",
            "COMPLETED",
            "NEW_OBJECT",
            "COMPLETED",
            "COMPLETED",
            "COMPLETED",
            "NEW_OBJECT",
        ]
        assert nodes[5]["output"] == 1.2
        assert res.status == "CANCELLED"

    @pytest.mark.slow
    def test_cancelling_a_chain_mid_way_never_crashes_the_process(self, tmp_path):
        """Ray 2.60 aborts the process that owns a task cancelled while it waits for its
        arguments, once those arrive (it happened on every other cancel of a chain).
        In a subprocess, since the abort takes the whole process down."""
        script = tmp_path / "chain_cancel.py"
        script.write_text(
            textwrap.dedent("""
            import time
            import qflow

            @qflow.electron
            def nap(x):
                time.sleep(0.02)
                return x + 1

            @qflow.lattice
            def chain(n):
                x = 0
                for _ in range(n):
                    x = nap(x)
                return x

            for i in range(6):
                dispatch_id = qflow.dispatch(chain)(100)
                time.sleep(0.3 + 0.05 * i)
                qflow.cancel(dispatch_id)
                assert qflow.get_result(dispatch_id, wait=True).status == "CANCELLED"
                assert qflow.dispatch_sync(chain)(2).result == 2
            print("survived")
        """)
        )
        env = {**os.environ, "QFLOW_HOME": str(tmp_path / "home")}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=240
        )
        assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-3000:]

    def test_cancel_unknown_node(self):
        """Unknown node ids are refused with the valid range."""
        dispatch_id = qflow.dispatch(long_flow)(0)
        with pytest.raises(QflowInputError, match=r"no nodes \[9\]; valid node ids are 0..3"):
            qflow.cancel(dispatch_id, task_ids=[9])


@qflow.electron
def count_calls(path, x):
    p = pathlib.Path(path)
    p.write_text(p.read_text() + "x" if p.exists() else "x")
    return x * 2


@qflow.electron
def plus(x, k=0):
    return x + k


@qflow.lattice
def counted(path, x, k=0):
    return plus(count_calls(path, x), k=k)


class TestRedispatch:
    def test_reuses_original_args_and_kwargs(self, tmp_path):
        """With no new inputs, both args and kwargs are reused, even with replacements."""
        path = str(tmp_path / "calls")
        first = qflow.dispatch_sync(counted)(path, 3, k=1)
        assert first.result == 7

        @qflow.electron
        def plus(x, k=0):
            return x + 100 * k

        again = qflow.get_result(
            qflow.redispatch(first.dispatch_id, replace_electrons={"plus": plus})(), wait=True
        )
        assert again.result == 106
        assert again.inputs == {"args": (path, 3), "kwargs": {"k": 1}}

    def test_new_inputs(self, tmp_path):
        """New inputs replace the old ones."""
        first = qflow.dispatch_sync(counted)(str(tmp_path / "c"), 1)
        again = qflow.get_result(
            qflow.redispatch(first.dispatch_id)(str(tmp_path / "c"), 5), wait=True
        )
        assert again.result == 10

    def test_reuse_previous_results_skips_unchanged_nodes(self, tmp_path):
        """With reuse, unchanged completed nodes are not executed again."""
        path = tmp_path / "calls"
        first = qflow.dispatch_sync(counted)(str(path), 2, k=1)
        assert path.read_text() == "x"

        @qflow.electron
        def plus(x, k=0):
            return x - k

        new_id = qflow.redispatch(
            first.dispatch_id, replace_electrons={"plus": plus}, reuse_previous_results=True
        )()
        res = qflow.get_result(new_id, wait=True)
        assert res.result == 3
        assert path.read_text() == "x"  # count_calls was not run again
        assert res.get_node_result(0)["output"] == 4

        # Without reuse it runs again.
        qflow.get_result(qflow.redispatch(first.dispatch_id)(), wait=True)
        assert path.read_text() == "xx"
