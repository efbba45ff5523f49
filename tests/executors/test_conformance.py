"""Every registered executor keeps the same contract (a conformance suite)."""

import pytest

import qflow
from qflow.executors import Executor, resolve_executor

# Slurm is always in the list: its tests start the local Slurm (and fail if they cannot).
EXECUTORS = [
    pytest.param(n, marks=pytest.mark.slurm) if n == "slurm" else n
    for n in sorted(Executor.registry)
]


@pytest.fixture(params=EXECUTORS)
def executor(request):
    return request.param


def test_registry_names_derive_from_class(executor):
    """Short names come from the <Name>Executor class name."""
    cls = Executor.registry[executor]
    assert cls.__name__.lower() == executor + "executor"
    assert isinstance(resolve_executor(executor), cls)


def test_runs_a_chain_with_captured_output(executor):
    """Values flow between nodes on this executor; prints are captured per node."""

    @qflow.electron(executor=executor)
    def step(x):
        print(f"step {x}")
        return x + 1

    @qflow.lattice
    def flow():
        return step(step(0))

    res = qflow.dispatch_sync(flow)()
    assert res.result == 2, res.error
    assert res.get_node_result(2)["stdout"] == "step 1\n"  # node 1 is the literal 0


def test_mixes_with_ray_nodes(executor):
    """A node on this executor feeds a Ray node and is fed by one."""

    @qflow.electron(executor=executor)
    def here(x):
        return x * 3

    @qflow.electron
    def on_ray(x):
        return x + 1

    @qflow.lattice
    def flow():
        return on_ray(here(on_ray(1)))

    assert qflow.dispatch_sync(flow)().result == 7


def test_failure_carries_traceback_and_stops_dependants(executor):
    """An exception fails the node with its traceback; dependants never run."""

    @qflow.electron(executor=executor)
    def bad():
        raise ZeroDivisionError("nope")

    @qflow.electron(executor=executor)
    def later(x):
        return x

    @qflow.lattice
    def flow():
        return later(bad())

    res = qflow.dispatch_sync(flow)()
    assert res.status == "FAILED"
    assert "ZeroDivisionError: nope" in res.get_node_result(0)["error"]
    assert res.get_node_result(1)["status"] == "NEW_OBJECT"


def test_subclass_contract_checked_at_definition():
    """A subclass without submit, or misnamed, is refused when defined."""
    with pytest.raises(TypeError, match="must define submit"):

        class NoSubmitExecutor(Executor):
            pass

    with pytest.raises(TypeError, match="named <Name>Executor"):

        class Runner(Executor):
            def submit(self, call, deps):
                raise NotImplementedError


def test_local_electrons_side_by_side_each_keep_their_own_prints():
    """Covalent's "Hello from Task N" example on executor="local": two electrons print
    at the same time in one process; each node's stdout is its own."""
    import time

    import qflow

    @qflow.electron(executor="local")
    def hello(i):
        for _ in range(20):
            print(f"Hello from Task {i}")
            time.sleep(0.01)
        return i

    @qflow.lattice
    def flow():
        return [hello(0), hello(1)]

    res = qflow.dispatch_sync(flow)()
    assert res.status == "COMPLETED", res.error
    outs = {
        n["node_name"] + str(n["node_id"]): n["stdout"]
        for n in res.get_all_node_results()
        if n["node_name"] == "hello"
    }
    assert len(outs) == 2
    for i, text in enumerate(sorted(outs.values())):
        assert text == f"Hello from Task {i}\n" * 20, text
