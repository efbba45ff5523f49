"""Packing: ready calls of an electron with ``pack=N`` share one Ray task, and each is
still its own node (status, output, stdout, error, metrics), on the session's Ray."""

from __future__ import annotations

import os
import time

import pytest

import qflow
from qflow.exceptions import QflowConfigError

pytestmark = pytest.mark.slow


@qflow.electron(pack=5)
def where(x):
    import ray

    print(f"call {x}")
    qflow.log_metric("x", x)
    if x == 7:
        raise ValueError("seven is bad")
    return [x, ray.get_runtime_context().get_task_id()]


@qflow.lattice
def spread(n):
    return [where(i) for i in range(n)]


def test_a_pack_runs_its_calls_as_nodes_of_their_own():
    """Twelve calls in packs of five: three tasks, twelve nodes; the failing call fails
    alone, with its traceback, and the rest of its pack completes."""
    res = qflow.get_result(qflow.dispatch(spread)(12), wait=True, timeout=120)
    assert res.status == "FAILED"
    nodes = [n for n in res.get_all_node_results() if n["node_name"] == "where"]
    assert len(nodes) == 12
    by_status = {}
    for n in nodes:
        by_status.setdefault(n["status"], []).append(n)
    assert len(by_status["FAILED"]) == 1 and len(by_status["COMPLETED"]) == 11
    failed = by_status["FAILED"][0]
    assert "ValueError: seven is bad" in failed["error"] and failed["start_time"]
    tasks = {n["output"].get_deserialized()[1] for n in by_status["COMPLETED"]}
    assert len(tasks) == 3  # [0-4], [5-9], [10-11]: each pack one Ray task
    for n in nodes:  # its own output, stdout, times and metric
        x = n["output"].get_deserialized()[0] if n["status"] == "COMPLETED" else 7
        assert n["stdout"] == f"call {x}\n"
        assert n["start_time"] <= n["end_time"]
    assert sorted(p.value for p in res.get_metrics()["x"]) == [float(i) for i in range(12)]
    assert "seven is bad" in res.error


@qflow.electron(pack=4)
def doze(x):
    time.sleep(60)
    return x


@qflow.lattice
def dozes(n):
    return [doze(i) for i in range(n)]


def test_cancel_stops_a_pack_and_leaves_nothing_running():
    dispatch_id = qflow.dispatch(dozes)(8)
    deadline = time.monotonic() + 60
    while qflow.get_result(dispatch_id, status_only=True)["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    qflow.cancel(dispatch_id)
    res = qflow.get_result(dispatch_id, wait=True, timeout=60)
    assert res.status == "CANCELLED"
    statuses = {n["status"] for n in res.get_all_node_results() if n["node_name"] == "doze"}
    assert statuses <= {"CANCELLED"}


@qflow.electron(pack=3)
def crash_once(x, marks):
    # The first attempt of call 1 kills its worker, and with it its whole pack.
    mark = os.path.join(marks, "crashed")
    if x == 1 and not os.path.exists(mark):
        open(mark, "w").close()
        os._exit(1)
    return x * 10


@qflow.lattice
def crashing(n, marks):
    return [crash_once(i, marks) for i in range(n)]


def test_a_worker_killed_mid_pack_runs_the_pack_again(tmp_path):
    res = qflow.dispatch_sync(crashing)(3, str(tmp_path))
    assert res.status == "COMPLETED", res.error
    assert res.result == [0, 10, 20]
    assert (tmp_path / "crashed").exists()


def test_a_packed_dispatch_reruns_node_by_node_with_reuse():
    first = qflow.dispatch_sync(spread)(5)  # no 7: all complete
    assert first.status == "COMPLETED"
    again = qflow.get_result(
        qflow.redispatch(first.dispatch_id, reuse_previous_results=True)(), wait=True
    )
    assert again.status == "COMPLETED"
    assert again.result == first.result  # the same task ids: every node reused


def test_pack_sizes_are_checked_when_the_electron_is_made():
    for bad in (0, -2, "five", 2.5):
        with pytest.raises(QflowConfigError, match="pack is the number of calls"):
            qflow.electron(pack=bad)(lambda x: x)
    assert qflow.electron(pack=False)(lambda x: x) is not None


@qflow.electron
def tiny(x):
    import ray

    return ray.get_runtime_context().get_task_id()


@qflow.electron(pack=False)
def tiny_alone(x):
    import ray

    return ray.get_runtime_context().get_task_id()


@qflow.lattice
def tinies(n, alone=False):
    return [(tiny_alone if alone else tiny)(i) for i in range(n)]


def test_short_electrons_are_packed_by_default_and_pack_false_turns_it_off():
    """200 trivial calls: the first ones run alone, to time the electron; the rest go
    in packs (here at least two per CPU). ``pack=False``: a task each."""
    res = qflow.dispatch_sync(tinies)(200)
    assert res.status == "COMPLETED"
    assert len(res.result) == 200
    assert len(set(res.result)) <= 12  # 2 probes, then a few packs (2 per CPU at least)
    alone = qflow.dispatch_sync(tinies)(50, alone=True)
    assert len(set(alone.result)) == 50


@qflow.electron(pack=4)
def step(x):
    time.sleep(0.5)
    return x


@qflow.lattice
def steps(n):
    return [step(i) for i in range(n)]


def test_cancelling_one_packed_call_leaves_its_pack_mates_running():
    dispatch_id = qflow.dispatch(steps)(4)
    deadline, running = time.monotonic() + 60, []
    while not running:  # the pack handed to Ray: its calls RUNNING
        assert time.monotonic() < deadline
        time.sleep(0.05)
        running = [
            n["node_id"]
            for n in qflow.get_result(dispatch_id).get_all_node_results()
            if n["node_name"] == "step" and n["status"] == "RUNNING"
        ]
    qflow.cancel(dispatch_id, [running[-1]])
    res = qflow.get_result(dispatch_id, wait=True, timeout=60)
    statuses = sorted(n["status"] for n in res.get_all_node_results() if n["node_name"] == "step")
    assert statuses == ["CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED"]
    assert res.status == "CANCELLED"


@qflow.electron
def link(x, stop):
    import ray

    if x == stop:
        raise RuntimeError(f"link {x} broke")
    return (
        [x[0] + 1, ray.get_runtime_context().get_task_id()]
        if isinstance(x, list)
        else [
            x + 1,
            ray.get_runtime_context().get_task_id(),
        ]
    )


@qflow.electron
def first(pair):
    return pair[0]


@qflow.lattice
def links(n, stop=-1):
    tasks = []
    x = 0
    for _ in range(n):
        pair = link(x, stop)
        x = first(pair)
        tasks.append(pair)
    return tasks


def test_a_chain_of_short_electrons_runs_fused_and_stops_at_a_failure():
    """A linear chain: after its first calls are timed, the rest of it runs in one
    task, each call still a node. A failure inside fails that call; the calls after it
    in the fused task never run (NEW_OBJECT, as any call waiting on a failure)."""
    res = qflow.dispatch_sync(links)(30)
    assert res.status == "COMPLETED", res.error
    assert [p[0] for p in res.result] == list(range(1, 31))
    assert len({p[1] for p in res.result}) <= 6  # not 60 tasks: the chain is fused
    broken = qflow.dispatch_sync(links)(30, stop=20)
    assert broken.status == "FAILED" and "link 20 broke" in broken.error
    nodes = broken.get_all_node_results()
    by_status = {}
    for n in nodes:
        if n["node_name"] in ("link", "first"):
            by_status.setdefault(n["status"], []).append(n)
    assert len(by_status["FAILED"]) == 1
    assert "FAILED" not in {n["status"] for n in nodes if n["node_name"] == "first"}
    assert len(by_status["COMPLETED"]) == 40  # 20 links and 20 firsts before the break
    assert len(by_status["NEW_OBJECT"]) == 19  # the rest never ran
