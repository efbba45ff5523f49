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


def _ran(marks, x):
    """Mark one run of call ``x``; True on its first run."""
    first = not any(name.startswith(f"ran-{x}-") for name in os.listdir(marks))
    open(os.path.join(marks, f"ran-{x}-{time.time_ns()}-{os.getpid()}"), "w").close()
    return first


def _runs(marks):
    counts = {}
    for name in os.listdir(marks):
        x = int(name.split("-")[1])
        counts[x] = counts.get(x, 0) + 1
    return counts


@qflow.electron(pack=4)
def crash_once(x, marks):
    # The first run of call 2 kills its worker, and with it the task of its pack.
    time.sleep(0.01)  # long enough to be reported as soon as it ends
    if _ran(marks, x) and x == 2:
        os._exit(1)
    return x * 10


@qflow.lattice
def crashing(n, marks):
    return [crash_once(i, marks) for i in range(n)]


def test_a_worker_killed_mid_pack_reruns_only_the_unfinished_calls(tmp_path):
    res = qflow.dispatch_sync(crashing)(4, str(tmp_path))
    assert res.status == "COMPLETED", res.error
    assert res.result == [0, 10, 20, 30]
    assert _runs(tmp_path) == {0: 1, 1: 1, 2: 2, 3: 1}  # calls 0 and 1 had finished


@qflow.electron(pack=2, max_retries=1)
def crash_always(x, marks):
    time.sleep(0.01)
    _ran(marks, x)
    if x == 1:
        os._exit(1)
    return x


@qflow.lattice
def always_crashing(marks):
    return [crash_always(i, marks) for i in range(2)]


def test_a_call_that_kills_its_worker_each_time_fails_alone_after_its_retries(tmp_path):
    res = qflow.dispatch_sync(always_crashing)(str(tmp_path))
    assert res.status == "FAILED"
    nodes = {
        n["node_id"]: n for n in res.get_all_node_results() if n["node_name"] == "crash_always"
    }
    by_x = dict(zip(sorted(nodes), nodes.values()))
    statuses = sorted(n["status"] for n in by_x.values())
    assert statuses == ["COMPLETED", "FAILED"], statuses
    failed = next(n for n in by_x.values() if n["status"] == "FAILED")
    assert "worker" in (failed["error"] or "").lower(), failed["error"]
    assert _runs(tmp_path) == {0: 1, 1: 2}  # max_retries=1: one rerun, of call 1 only


@qflow.electron(pack=3)
def sized(i):
    return bytes(200_000 if i % 2 else 10)  # 200 kB: past what travels inline


@qflow.electron(executor="local")
def lengths_here(values):
    return [len(v) for v in values]


@qflow.electron
def lengths_on_ray(values):
    return [len(v) for v in values]


@qflow.lattice
def sizes(n):
    values = [sized(i) for i in range(n)]
    return lengths_here(values), lengths_on_ray(values)


def test_packed_values_small_and_large_reach_dependants_on_any_executor():
    res = qflow.dispatch_sync(sizes)(6)
    assert res.status == "COMPLETED", res.error
    want = [200_000 if i % 2 else 10 for i in range(6)]
    assert list(res.result) == [want, want]


@qflow.electron
def crash_step(x, marks, crash_at):
    time.sleep(0.003)
    if _ran(marks, x) and x == crash_at:
        os._exit(1)
    return x + 1


@qflow.lattice
def stepping(n, marks, crash_at):
    x = 0
    for _ in range(n):
        x = crash_step(x, marks, crash_at)
    return x


def test_a_worker_killed_mid_chain_reruns_the_chain_from_where_it_stopped(tmp_path):
    """A fused chain whose worker dies: its next pack starts at the call that was
    running, with the value of the call before it."""
    res = qflow.dispatch_sync(stepping)(30, str(tmp_path), 20)
    assert res.status == "COMPLETED", res.error
    assert res.result == 30
    runs = _runs(tmp_path)
    assert runs.pop(20) == 2 and set(runs.values()) == {1}, runs
    names = os.listdir(tmp_path)
    first_20 = min(
        (n for n in names if n.startswith("ran-20-")), key=lambda n: int(n.split("-")[2])
    )
    (run_19,) = [n for n in names if n.startswith("ran-19-")]
    assert first_20.split("-")[3] == run_19.split("-")[3]  # one worker: a fused chain
    tasks = {n["node_id"]: n for n in res.get_all_node_results() if n["node_name"] == "crash_step"}
    assert len(tasks) == 30 and {n["status"] for n in tasks.values()} == {"COMPLETED"}


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
    # 2 probes, then packs of about 50 ms of the probe's time: a handful when the
    # machine is idle, more when its load slows the probe (42 seen in a full run).
    assert len(set(res.result)) <= 60
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
