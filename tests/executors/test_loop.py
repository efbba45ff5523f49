"""The loop executor: a variational loop's chunks as calls on the loop's actor."""

import threading
import time
from concurrent.futures import Future

import pennylane as qml
import pytest

import qflow
from qflow import _loop_pool
from qflow.executors import loop
from qflow.loops.spec import LoopSpec, prepare
from qflow.loops.workflow import variational_loop
from qflow.variational import minimize


def slow_circuit(p):
    time.sleep(0.02)
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))


def rx_circuit(p):
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))


class TestHelpers:
    """Pure parts, no Ray."""

    def _call(self, args, kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(args=args, kwargs=kwargs)

    def test_loop_id_is_a_literal_first_argument(self):
        spec = LoopSpec("abc", print, 1, None, steps=2, pack=1)
        assert loop._loop_id(self._call((("c", spec), ("n", 3)), {})) == "abc"
        assert loop._loop_id(self._call((("n", 3),), {})) is None  # an output, not known
        assert loop._loop_id(self._call((("c", 7),), {})) is None
        assert loop._loop_id(self._call((), {})) is None

    def test_only_an_explicit_last_false_lets_the_next_node_follow_early(self):
        assert not loop._is_last(self._call((), {"last": ("c", False)}))
        assert loop._is_last(self._call((), {"last": ("c", True)}))
        assert loop._is_last(self._call((), {}))  # unknown: the safe choice
        assert loop._is_last(self._call((), {"last": ("n", 4)}))

    def test_when_done_waits_for_every_future_and_reports_the_first_error(self):
        seen = []
        a, b = Future(), Future()
        loop._when_done([a, b], lambda: seen.append("then"), seen.append)
        a.set_result(1)
        assert seen == []
        b.set_result(2)
        assert seen == ["then"]

        c, d = Future(), Future()
        loop._when_done([c, d], lambda: seen.append("then"), seen.append)
        err = ValueError("lost")
        c.set_exception(err)
        d.set_result(1)
        assert seen == ["then", err]

        loop._when_done([], lambda: seen.append("none"), seen.append)
        assert seen[-1] == "none"


def _spy_attempts(monkeypatch):
    """Record, for each chunk attempt, whether it went to the loop's actor, and whether
    the actor keeps its output for the next chunk."""
    placed, kept = [], []
    original = loop.LoopExecutor._attempt

    def attempt(self, call, deps, sub, try_actor, restarted=False, keep=False):
        original(self, call, deps, sub, try_actor, restarted, keep)
        placed.append(sub.handle.on_actor)
        kept.append(sub.handle.held_as is not None)

    monkeypatch.setattr(loop.LoopExecutor, "_attempt", attempt)
    return placed, kept


def test_every_chunk_after_the_first_is_a_call_on_the_loop_actor(monkeypatch):
    placed, kept = _spy_attempts(monkeypatch)
    res = minimize(
        rx_circuit, [0.4], wires=1, backend="default.qubit", steps=8, pack=2, progress=False
    )
    assert res.iterations == 8 and res.actor_restarts == 0
    assert placed == [False, True, True, True]
    # The actor keeps what the next call takes from it; the last chunk's output goes to
    # the loop's close (a plain task) as a Ray object.
    assert kept == [False, True, True, False]
    nodes = [
        n
        for n in qflow.get_result(res.dispatch_id).get_all_node_results()
        if n["node_name"] == "run_chunk"
    ]
    assert [n["status"] for n in nodes] == [qflow.status.COMPLETED] * 4


def test_cancelling_a_loop_stops_its_chunks_at_once_and_frees_its_actor():
    spec, state = prepare(slow_circuit, [0.3], wires=1, backend="default.qubit", steps=400, pack=2)
    dispatch_id = qflow.dispatch(variational_loop)(spec, state)

    def completed():
        return sum(
            n["status"] == qflow.status.COMPLETED
            for n in qflow.get_result(dispatch_id).get_all_node_results()
            if n["node_name"] == "run_chunk"
        )

    deadline = time.monotonic() + 60
    while completed() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert completed() >= 3
    qflow.cancel(dispatch_id)
    res = qflow.get_result(dispatch_id, wait=True)
    assert res.status == qflow.status.CANCELLED
    done = completed()
    time.sleep(1.0)  # chunks take about 0.1 s each: several would finish if any ran on
    assert completed() == done < 200
    assert _loop_pool.call_pool("holder", spec.loop_id) is None


@pytest.mark.slow
def test_a_loop_survives_its_actor_dying_twice():
    """Each death reruns the lost chunk on a fresh actor, from the last finished one."""
    import ray

    _loop_pool.call_pool("clear")
    out, steps = {}, []
    thread = threading.Thread(
        target=lambda: out.update(
            res=minimize(
                slow_circuit,
                [0.3],
                wires=1,
                backend="default.qubit",
                steps=80,
                pack=4,
                callback=lambda step, cost: steps.append(step),
                progress=False,
                keep_warm=0,
            )
        )
    )
    thread.start()
    killed = []
    for after_step in (12, 40):  # each time with chunks running on the actor
        deadline = time.monotonic() + 60
        while len(steps) < after_step and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = [name for name in _busy_actor_names() if name not in killed]
        assert len(busy) == 1, busy
        ray.kill(ray.get_actor(busy[0], namespace="qflow"))
        killed.append(busy[0])
    thread.join(120)
    res = out["res"]
    assert res.actor_restarts == 2
    assert res.iterations == 80 and res.final_cost < -0.99
    assert res.costs == pytest.approx(sorted(res.costs, reverse=True))


def _busy_actor_names():
    import ray

    idle = set(_loop_pool.call_pool("idle_names"))
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(_loop_pool.ACTOR_PREFIX) and a["name"] not in idle
    ]


def test_an_idle_actor_that_died_in_the_pool_is_replaced():
    import ray

    _loop_pool.call_pool("clear")
    minimize(
        rx_circuit,
        [0.4],
        wires=1,
        backend="default.qubit",
        steps=2,
        pack=1,
        progress=False,
        keep_warm=60,
    )
    (idle,) = _loop_pool.call_pool("idle_names")
    ray.kill(ray.get_actor(idle, namespace="qflow"))
    res = minimize(
        rx_circuit,
        [0.4],
        wires=1,
        backend="default.qubit",
        steps=4,
        pack=2,
        progress=False,
        keep_warm=0,
    )
    assert res.iterations == 4 and res.actor_restarts == 0
    assert idle not in _busy_actor_names()


def test_cancelling_one_chunk_stops_the_chunks_after_it_as_never_run():
    spec, state = prepare(slow_circuit, [0.3], wires=1, backend="default.qubit", steps=400, pack=2)
    dispatch_id = qflow.dispatch(variational_loop)(spec, state)

    def chunks():
        return [
            n
            for n in qflow.get_result(dispatch_id).get_all_node_results()
            if n["node_name"] == "run_chunk"
        ]

    deadline = time.monotonic() + 60
    while (
        sum(n["status"] == qflow.status.COMPLETED for n in chunks()) < 3
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    # Ten chunks (about a second) after the first unfinished one: not started yet.
    target = [n["node_id"] for n in chunks() if n["status"] == qflow.status.RUNNING][10]
    qflow.cancel(dispatch_id, task_ids=[target])
    res = qflow.get_result(dispatch_id, wait=True)
    assert res.status in (qflow.status.CANCELLED, qflow.status.FAILED)
    status = {n["node_id"]: n["status"] for n in chunks()}
    assert all(s == qflow.status.COMPLETED for nid, s in status.items() if nid < target)
    assert status[target] == qflow.status.CANCELLED
    assert not any(s == qflow.status.COMPLETED for nid, s in status.items() if nid > target)
    assert not any("Actor" in (n["error"] or "") for n in chunks()), "never an actor error"
    assert _loop_pool.call_pool("holder", spec.loop_id) is None
