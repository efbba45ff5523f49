"""What a lattice turns into graph nodes, and how it runs."""

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

import qflow
from qflow.exceptions import GraphBuildError, QflowInputError


@qflow.electron
def add(a, b=0):
    return a + b


@qflow.electron
def pair(x):
    return (x, x * 10)


@qflow.electron
def total(items):
    return sum(items)


@qflow.electron
def size(blob):
    return len(blob)


@dataclass
class Point:
    x: int
    y: int


@qflow.electron
def point(x):
    return Point(x, x + 1)


@qflow.electron
def mapping(x):
    return {"k": x, "j": -x}


def run(lat, *args, **kwargs):
    res = qflow.dispatch_sync(lat)(*args, **kwargs)
    assert res.status == qflow.status.COMPLETED, res.error
    return res


class TestGraphBuilding:
    def test_loops_and_comprehensions(self):
        """Each electron call in a loop is a node."""

        @qflow.lattice
        def flow(n):
            out = [add(i, 1) for i in range(n)]
            acc = 0
            for value in out:
                acc = add(acc, value)
            return acc

        res = run(flow, 4)
        assert res.result == 1 + 2 + 3 + 4
        # 8 electrons; 9 parameters (each i and 1, and the first acc); the return value
        assert len(res.get_all_node_outputs()) == 8 + 9 + 1

    def test_args_kwargs_and_defaults(self):
        """*args, **kwargs, keywords and defaults reach the electrons."""

        @qflow.lattice
        def flow(*nums, scale=3, **extra):
            return [add(n, b=scale) for n in nums] + [add(extra["z"])]

        res = run(flow, 1, 2, z=7)
        assert res.result == [4, 5, 7]
        assert res.inputs == {"args": (1, 2), "kwargs": {"z": 7}}

    def test_indexing_unpacking_attributes_arithmetic(self):
        """out[0], out[-1], out['k'], unpacking, .attr and + - * / ** all become nodes."""

        @qflow.lattice
        def flow(x):
            a, b = pair(x)
            p = point(x)
            m = mapping(x)
            t = pair(x)
            return {
                "a": a,
                "b": b,
                "first": t[0],
                "last": t[-1],
                "k": m["k"],
                "x": p.x,
                "y": p.y,
                "arith": (a + b) * 2 - a / 2 + a**2,
                "r": 100 - b,
            }

        res = run(flow, 2)
        assert res.result == {
            "a": 2,
            "b": 20,
            "first": 2,
            "last": 20,
            "k": 2,
            "x": 2,
            "y": 3,
            "arith": 44 - 1 + 4,
            "r": 80,
        }
        names = [k.split("(")[0] for k in res.get_all_node_outputs()]
        assert {":getitem:", ":getattr:", ":add:", ":mul:", ":sub:", ":truediv:", ":pow:"} <= set(
            names
        )

    def test_containers_of_outputs_as_args(self):
        """Lists and dicts of outputs mixed with literals are passed and returned."""

        @qflow.electron
        def keys(d):
            return sorted(d.items())

        @qflow.lattice
        def flow(x):
            a, b = add(x, 1), add(x, 2)
            return total([a, b, 100]), keys({"a": a, "lit": 5}), [a, {"b": b}]

        res = run(flow, 1)
        assert res.result == (105, [("a", 2), ("lit", 5)], [2, {"b": 3}])
        assert any(k.startswith(":electron_list:") for k in res.get_all_node_outputs())
        assert any(k.startswith(":electron_dict:") for k in res.get_all_node_outputs())

    def test_tuple_stays_tuple(self):
        """A tuple returned by an electron is a tuple in the result and downstream."""

        @qflow.electron
        def kind(t):
            return type(t).__name__

        @qflow.lattice
        def flow(x):
            t = pair(x)
            return t, kind(t)

        res = run(flow, 1)
        assert res.result == ((1, 10), "tuple")
        assert res.get_all_node_outputs()["pair(0)"].get_deserialized() == (1, 10)

    def test_big_arguments_do_not_explode(self):
        """A 1 MiB bytes object and a long list stay one node each."""
        blob = b"x" * (1 << 20)
        many = list(range(100_000))

        @qflow.lattice
        def flow(blob, many):
            return size(blob), total(many)

        graph = flow.build_graph(blob, many)
        # two electrons, one parameter each, the return value's node
        assert [n.kind for n in graph.nodes] == [
            "electron",
            "parameter",
            "electron",
            "parameter",
            "op",
        ]
        res = run(flow, blob, many)
        assert res.result == (1 << 20, sum(many))

    def test_build_error_propagates_from_dispatch(self):
        """An exception while building the graph comes out of dispatch(...)(...)."""

        @qflow.lattice
        def flow(x):
            raise RuntimeError("cannot build")

        with pytest.raises(RuntimeError, match="cannot build"):
            qflow.dispatch(flow)(1)

    def test_direct_call_is_plain_python(self):
        """Calling a lattice runs it as Python: electrons are plain functions."""

        @qflow.lattice
        def flow(x):
            a, b = pair(x)
            return add(a, b)

        assert flow(2) == 22

    def test_branching_on_output_is_a_clear_error(self):
        """`if output:` needs a value, so it fails at build time with advice."""

        @qflow.lattice
        def flow(x):
            return add(x) if add(x) else 0

        with pytest.raises(GraphBuildError, match="cannot decide an `if`"):
            qflow.dispatch(flow)(1)

    def test_iterating_unknown_length_is_a_clear_error(self):
        """`for v in output` has no known length; the error says what to do."""

        @qflow.lattice
        def flow(x):
            return [v for v in pair(x)]  # noqa: C416 (iterating is what is tested)

        with pytest.raises(GraphBuildError, match="Unpack it into names"):
            flow.build_graph(1)

    def test_wrong_lattice_arguments(self):
        """Arguments that do not fit the signature get the signature in the message."""

        @qflow.lattice
        def flow(x, y):
            return add(x, y)

        with pytest.raises(QflowInputError, match=r"flow\(x, y\) cannot take args=\(1,\)"):
            qflow.dispatch(flow)(1)

    @pytest.mark.slow
    def test_main_module_functions_shipped_by_value(self, tmp_path, qflow_home):
        """Functions and classes defined in __main__ run on Ray workers."""
        script = tmp_path / "script.py"
        script.write_text(
            textwrap.dedent("""
            import qflow, ray
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            class Box:
                def __init__(self, v): self.v = v
            def helper(v): return Box(v * 2)
            @qflow.electron
            def task(v): return helper(v).v
            @qflow.lattice
            def flow(v): return task(v)
            print(qflow.dispatch_sync(flow)(21).result)
        """)
        )
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=180,
            env={**__import__("os").environ, "QFLOW_HOME": qflow_home},
        )
        assert out.returncode == 0 and out.stdout.strip().endswith("42"), out.stderr[-3000:]
