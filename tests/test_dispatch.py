"""Dispatching, results and failure semantics."""

import time
from datetime import datetime

import pytest

import qflow
from qflow.exceptions import DispatchNotFoundError, QflowInputError, QflowSerializationError


@qflow.electron
def inc(x):
    print(f"inc {x}")
    return x + 1


@qflow.electron
def fail(x):
    raise ValueError(f"no good: {x}")


@qflow.electron
def nap(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@qflow.lattice
def chain(x):
    return inc(inc(x))


class TestDispatch:
    def test_returns_at_once_with_fresh_ids(self):
        """dispatch returns an id at once, a new one each time."""

        @qflow.lattice
        def slow():
            return nap(1.5)

        t0 = time.monotonic()
        a, b = qflow.dispatch(slow)(), qflow.dispatch(slow)()
        assert time.monotonic() - t0 < 1.5
        assert isinstance(a, str) and a != b
        assert qflow.get_result(a, status_only=True)["status"] in ("NEW_OBJECT", "RUNNING")
        assert qflow.get_result(a, wait=True).status == qflow.status.COMPLETED

    def test_dispatch_sync_and_result_fields(self):
        """Result carries result, status, times, inputs and per-node records."""
        res = qflow.dispatch_sync(chain)(1)
        assert res.result == 3 and res.status == "COMPLETED" and res.error is None
        assert isinstance(res.start_time, datetime) and res.end_time >= res.start_time
        assert res.inputs == {"args": (1,), "kwargs": {}}
        outputs = res.get_all_node_outputs()
        assert list(outputs) == [
            "inc(0)",
            ":parameter:1(1)",
            "inc(2)",
            ":postprocess:reconstruct(3)",
        ]
        assert outputs["inc(2)"].get_deserialized() == 3
        node = res.get_node_result(0)
        assert {
            "node_id",
            "node_name",
            "status",
            "output",
            "error",
            "start_time",
            "end_time",
            "stdout",
            "stderr",
            "sublattice_result",
        } <= set(node)
        assert node["stdout"] == "inc 1\n" and node["output"] == 2
        assert [n["node_id"] for n in res.get_all_node_results()] == [0, 1, 2, 3]

    def test_status_only(self):
        """status_only returns just the id and status."""
        dispatch_id = qflow.dispatch(chain)(0)
        qflow.get_result(dispatch_id, wait=True)
        assert qflow.get_result(dispatch_id, status_only=True) == {
            "id": dispatch_id,
            "status": "COMPLETED",
        }

    def test_independent_electrons_overlap(self):
        """Independent electrons run at the same time."""

        @qflow.lattice
        def fan():
            return nap(1.0), nap(1.0)

        (s1, e1), (s2, e2) = qflow.dispatch_sync(fan)().result
        assert max(s1, s2) < min(e1, e2)

    def test_non_lattice_dispatch_is_clear(self):
        """Dispatching a plain function or an electron says to use a lattice."""
        with pytest.raises(QflowInputError, match="takes a lattice; got an electron"):
            qflow.dispatch(inc)
        with pytest.raises(QflowInputError, match="takes a lattice; got function"):
            qflow.dispatch(lambda: 1)

    def test_unknown_id(self):
        """An unknown id names itself and where it looked."""
        with pytest.raises(DispatchNotFoundError, match="No dispatch 'nope'.*qflow list"):
            qflow.get_result("nope")
        with pytest.raises(QflowInputError, match="got int 5"):
            qflow.get_result(5)

    def test_ray_options_resources_and_retries(self, tmp_path):
        """num_cpus, custom resources and retry_exceptions reach Ray."""
        from tests.conftest import TEST_RESOURCE

        marker = tmp_path / "tries"

        @qflow.electron(
            num_cpus=0.5, resources={TEST_RESOURCE: 1}, max_retries=2, retry_exceptions=[OSError]
        )
        def flaky(path):
            import pathlib

            p = pathlib.Path(path)
            n = int(p.read_text()) if p.exists() else 0
            p.write_text(str(n + 1))
            if n < 1:
                raise OSError("first try fails")
            return n

        @qflow.lattice
        def flow(path):
            return flaky(path)

        res = qflow.dispatch_sync(flow)(str(marker))
        assert res.result == 1 and marker.read_text() == "2"


class TestFailure:
    def test_failed_dispatch(self):
        """A failing electron fails the dispatch; dependants never run; siblings finish."""

        @qflow.lattice
        def flow(x):
            bad = fail(x)
            after = inc(bad)
            ok = inc(x)
            return after, ok

        res = qflow.dispatch_sync(flow)(7)
        assert res.status == qflow.status.FAILED and res.result is None
        assert "fail(0)" in res.error and "no good: 7" in res.error
        nodes = {n["node_name"] + str(n["node_id"]): n for n in res.get_all_node_results()}
        assert nodes["fail0"]["status"] == "FAILED"
        assert "ValueError: no good: 7" in nodes["fail0"]["error"]
        assert "Traceback" in nodes["fail0"]["error"]
        assert nodes[":parameter:71"]["status"] == "COMPLETED"  # literals: Covalent's nodes
        assert nodes["inc2"]["status"] == "NEW_OBJECT" and nodes["inc2"]["stdout"] == ""
        assert nodes["inc3"]["status"] == "COMPLETED" and nodes["inc3"]["output"] == 8

    def test_stderr_and_stdout_of_failing_electron(self):
        """What a failing electron printed is kept."""

        @qflow.electron
        def noisy():
            import sys

            print("to out")
            print("to err", file=sys.stderr)
            raise RuntimeError("x")

        @qflow.lattice
        def flow():
            return noisy()

        node = qflow.dispatch_sync(flow)().get_node_result(0)
        assert node["stdout"] == "to out\n" and node["stderr"].startswith("to err\n")
        assert "Traceback" in node["stderr"]  # Covalent puts the traceback in stderr too

    def test_unpicklable_argument_names_electron(self):
        """An argument that cannot be pickled is refused before anything runs."""
        import threading

        @qflow.lattice
        def flow(lock):
            return inc(lock)

        with pytest.raises(QflowSerializationError, match=r"argument 0 of electron inc\(0\)"):
            qflow.dispatch(flow)(threading.Lock())

    def test_unpicklable_output_names_electron(self):
        """An output that cannot be pickled fails its node with the electron's name."""

        @qflow.electron
        def make_lock():
            import threading

            return threading.Lock()

        @qflow.lattice
        def flow():
            return make_lock()

        res = qflow.dispatch_sync(flow)()
        assert res.status == "FAILED"
        assert "output of electron make_lock(0) cannot be pickled" in res.error
