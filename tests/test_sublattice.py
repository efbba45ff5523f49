"""Sublattices and ordering without data edges."""

import time

import qflow


@qflow.electron
def square(x):
    return x * x


@qflow.electron
def stamp(tag):
    time.sleep(0.3)
    return tag, time.time()


@qflow.electron
def nap_interval(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@qflow.lattice
def squares(n):
    return [square(i) for i in range(n)]


@qflow.lattice
def parallel_naps():
    return nap_interval(1.0), nap_interval(1.0)


@qflow.electron
def boom():
    raise KeyError("inner failure")


@qflow.lattice
def failing():
    return boom()


class TestSublattice:
    def test_sublattice_result(self):
        """A sublattice node carries a Result of its own."""
        sub = qflow.electron(squares)

        @qflow.lattice
        def outer(n):
            return square(sub(n)[-1])

        res = qflow.dispatch_sync(outer)(3)
        assert res.status == "COMPLETED", res.error
        assert res.result == 16
        node = res.get_node_result(0)
        child = node["sublattice_result"]
        assert child.status == "COMPLETED" and child.result == [0, 1, 4]
        assert [k for k in child.get_all_node_outputs() if not k.startswith(":")] == [
            "square(0)",
            "square(2)",
            "square(4)",
        ]

    def test_sublattice_electrons_run_in_parallel(self):
        """Independent electrons inside a sublattice overlap."""

        @qflow.lattice
        def outer():
            return qflow.electron(parallel_naps)()

        (s1, e1), (s2, e2) = qflow.dispatch_sync(outer)().result
        assert max(s1, s2) < min(e1, e2)

    def test_nested_sublattices(self):
        """Sublattices can nest."""
        middle = qflow.lattice(lambda n: qflow.electron(squares)(n))
        middle.__name__ = "middle"

        @qflow.lattice
        def outer(n):
            return qflow.electron(middle)(n)

        res = qflow.dispatch_sync(outer)(2)
        assert res.result == [0, 1]
        inner = res.get_node_result(0)["sublattice_result"].get_node_result(0)
        assert inner["sublattice_result"].result == [0, 1]

    def test_failing_sublattice_fails_parent(self):
        """A failing sublattice fails its parent; the text is reachable through it."""

        @qflow.lattice
        def outer():
            return qflow.electron(failing)()

        res = qflow.dispatch_sync(outer)()
        assert res.status == "FAILED" and "inner failure" in res.error
        child = res.get_node_result(0)["sublattice_result"]
        assert child.status == "FAILED" and "boom(0)" in child.error

    def test_sublattice_outside_lattice_is_plain(self):
        """Called outside a lattice, a sublattice is plain Python."""
        assert qflow.electron(squares)(3) == [0, 1, 4]


class TestWait:
    def test_wait_orders_without_data_edge(self):
        """qflow.wait makes a child start after its parents."""

        @qflow.lattice
        def flow():
            first = stamp("first")
            second = qflow.wait(stamp("second"), [first])
            return first, second

        (_, t1), (_, t2) = qflow.dispatch_sync(flow)().result
        assert t2 - t1 >= 0.25

    def test_wait_outside_lattice(self):
        """Outside a lattice wait returns the child."""
        assert qflow.wait("child", ["parent"]) == "child"


@qflow.lattice
def endless(n):
    return qflow.electron(endless)(n + 1)


def test_a_lattice_that_calls_itself_stops_at_the_depth_limit(monkeypatch):
    """Without a base case, each level would hold a Ray worker until memory ran out."""
    from qflow._api import _runtime
    from qflow.ui.views import node_summary

    monkeypatch.setenv("QFLOW_MAX_SUBLATTICE_DEPTH", "3")
    started = time.monotonic()
    res = qflow.get_result(qflow.dispatch(endless)(0), wait=True, timeout=120)
    assert res.status == "FAILED"
    assert "would nest 4 deep, past the limit of 3" in res.error
    assert "endless(0) -> endless(0) -> endless(0) -> endless(0)" in res.error
    assert "QFLOW_MAX_SUBLATTICE_DEPTH" in res.error
    assert time.monotonic() - started < 60
    top = [n for n in _runtime().store.get_nodes(res.dispatch_id) if n["kind"] == "sublattice"]
    assert node_summary(top[0])["sublattice_depth"] == 1


def test_the_depth_limit_must_be_a_positive_whole_number(monkeypatch):
    import pytest

    monkeypatch.setenv("QFLOW_MAX_SUBLATTICE_DEPTH", "lots")
    with pytest.raises(qflow.QflowError, match="QFLOW_MAX_SUBLATTICE_DEPTH is a whole number"):
        qflow.dispatch(squares)(2)
