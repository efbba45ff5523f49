"""Covalent 0.240 behaviour with ``import qflow as ct``: node numbering, the Result API,
executor plugins, wait constants. Each test follows a behaviour Covalent's own
functional tests or guides check."""

import sys
import time
import warnings

import pytest

import qflow as ct
from qflow.exceptions import QflowConfigError, QflowWarning


@ct.electron
def identity(a):
    return a


@ct.electron
def add(a, b):
    return a + b


class TestNodeNumbering:
    def test_parameters_and_the_return_value_are_nodes(self):
        @ct.lattice
        def check(a, b):
            return identity(a=add(a=a, b=b))

        check.build_graph(a=1, b=2)
        tg = check.transport_graph
        # add, a, b, identity, the return value: Covalent's five nodes
        assert list(tg._graph.nodes) == list(range(5))
        assert [tg.get_node_value(i, "name") for i in range(5)] == [
            "add",
            ":parameter:1",
            ":parameter:2",
            "identity",
            ":postprocess:reconstruct",
        ]
        assert tg.get_node_value(2, "value") == 2
        assert tg.get_dependencies(3) == [0]

    def test_unpacking_and_arithmetic_count_as_covalent_does(self):
        @ct.electron
        def split(s, n):
            return s[:n], s[n:]

        @ct.lattice
        def midword(a, b, n):
            first, last = split(a, n)
            return first + b + last

        @ct.electron
        def half_quarter(n):
            return n / 2.0, n / 4.0

        @ct.lattice
        def add_half_quarter(a):
            half, quarter = half_quarter(a)
            return half + quarter

        midword.build_graph("hello world", "beautiful", 6)
        assert list(midword.transport_graph._graph.nodes) == list(range(11))
        add_half_quarter.build_graph(0.1)
        assert list(add_half_quarter.transport_graph._graph.nodes) == list(range(8))

    def test_node_ids_address_the_same_electrons_as_in_covalent(self):
        @ct.electron
        def sq(a):
            return a**2

        @ct.electron
        def cube(a):
            return a**3

        @ct.electron
        def mul(x, y):
            return x * y

        @ct.lattice
        def workflow():
            res_1a, res_1b = sq(2), cube(2)
            res_2 = mul(res_1a, 3)
            res_3 = ct.wait(cube(5), [res_1a, res_1b])
            return mul(res_2, res_3)

        result = ct.dispatch_sync(workflow)()
        assert result.status == ct.Result.COMPLETED and result.result == 1500
        third = result.get_node_result(node_id=6)  # cube(5), as in Covalent's numbering
        assert third["node_name"] == "cube"
        assert third["start_time"] > result.get_node_result(node_id=0)["end_time"]
        assert third["start_time"] > result.get_node_result(node_id=2)["end_time"]

    def test_containers_of_outputs_are_collection_nodes(self):
        @ct.electron
        def collect(items):
            return items

        @ct.lattice
        def workflow():
            return collect(items=[[identity(a=i) for i in range(2)], {"k": identity(a=5)}])

        res = ct.dispatch_sync(workflow)()
        assert res.result == [[0, 1], {"k": 5}]
        names = [n["node_name"] for n in res.get_all_node_results()]
        assert names[:2] == ["identity", ":parameter:0"]
        assert ":electron_list:" in names and ":electron_dict:" in names


class TestResultApi:
    def test_status_constants_inputs_and_summary(self):
        @ct.electron
        def task(a, /, b, *args, c, **kwargs):
            return a * b * c, args, kwargs

        @ct.lattice
        def workflow(a, /, b, *args, c, **kwargs):
            return task(a, b, *args, c=c, **kwargs)

        dispatch_id = ct.dispatch(workflow)(1, 2, 3, 4, c=5, d=6, e=7)
        result = ct.get_result(
            dispatch_id,
            wait=ct.wait.EXTREME,
            workflow_output=True,
            intermediate_outputs=False,
            sublattice_results=False,
        )
        assert result.status == ct.Result.COMPLETED
        assert result.result == (10, (3, 4), {"d": 6, "e": 7})
        inputs = result.inputs.get_deserialized()
        assert inputs["args"] == (1, 2, 3, 4) and inputs["kwargs"] == {"c": 5, "d": 6, "e": 7}
        assert result.encoded_result.get_deserialized() == result.result
        assert result.num_nodes == len(result.get_all_node_results())
        assert result.root_dispatch_id == dispatch_id
        text = str(result)
        assert text.startswith("Lattice Result") and "status: COMPLETED" in text
        assert f"dispatch_id: {dispatch_id}" in text and "task(0):" in text

    def test_lattice_and_its_transport_graph(self):
        e_bash, l_bash = ct.DepsBash(["ls"]), ct.DepsBash(["ls -l"])

        @ct.electron(deps_bash=e_bash)
        def task_1():
            """First task."""

        @ct.electron
        def task_2():
            pass

        @ct.lattice(deps_bash=l_bash)
        def workflow():
            """The workflow's docstring."""
            task_1()
            task_2()

        res = ct.get_result(ct.dispatch(workflow)(), wait=True)
        lat = res.lattice
        assert lat.__name__ == "workflow" and lat.__doc__ == "The workflow's docstring."
        assert lat.workflow_function() is None  # the function itself, callable
        tg = lat.transport_graph
        dep_0 = ct.DepsBash().from_dict(tg.get_node_value(0, "metadata")["hooks"]["deps"]["bash"])
        dep_1 = ct.DepsBash().from_dict(tg.get_node_value(1, "metadata")["hooks"]["deps"]["bash"])
        assert dep_0.commands == ["ls"] and dep_1.commands == ["ls -l"]
        assert tg.get_node_value(0, "status") == ct.Result.COMPLETED
        with pytest.raises(KeyError, match="has no 'colour'; it has"):
            tg.get_node_value(0, "colour")

    def test_failed_node_status_in_the_graph_and_traceback_in_stderr(self):
        @ct.electron
        def failing_task(x):
            raise ValueError(f"bad {x}")

        @ct.lattice
        def workflow(x):
            return failing_task(failing_task(x))

        res = ct.get_result(ct.dispatch(workflow)(5), wait=True)
        assert res.status == ct.Result.FAILED
        tg = res.lattice.transport_graph
        assert tg.get_node_value(0, "status") == ct.Result.FAILED
        node = res.get_node_result(0)
        assert "Traceback" in node["stderr"] and "ValueError: bad 5" in node["stderr"]

    def test_transportable_object_and_sublattice_result(self):
        obj = ct.TransportableObject([1, 2])
        assert obj.get_deserialized() == [1, 2] and obj.object_string == "[1, 2]"

        sublattice_add = ct.lattice(lambda a, b: a + b)

        @ct.lattice
        def workflow(a, b):
            return identity(a=ct.electron(sublattice_add)(a=a, b=b))

        res = ct.get_result(ct.dispatch(workflow)(a=1, b=2), wait=True)
        assert res.error is None and res.result == 3
        child = res.get_node_result(node_id=0)["sublattice_result"]
        assert child.result == 3 and child.root_dispatch_id == res.dispatch_id

    def test_a_wait_constant_returns_the_result_as_it_is(self):
        @ct.electron
        def nap():
            time.sleep(3)
            return 1

        @ct.lattice
        def slow():
            return nap()

        dispatch_id = ct.dispatch(slow)()
        t0 = time.monotonic()
        res = ct.get_result(dispatch_id, wait=ct.waits.Wait(0.5))
        assert time.monotonic() - t0 < 2.5 and res.status in ("NEW_OBJECT", "RUNNING")
        assert ct.get_result(dispatch_id, wait=ct.wait.LONG).result == 1
        assert int(ct.wait.EXTREME) == sys.maxsize


class TestRedispatchReuse:
    def test_a_reused_node_has_one_timestamp_and_the_original_output(self):
        @ct.electron
        def make():
            return {"made": time.time()}

        @ct.lattice
        def workflow():
            return make()

        first = ct.dispatch_sync(workflow)()
        again = ct.get_result(
            ct.redispatch(first.dispatch_id, reuse_previous_results=True)(), wait=True
        )
        node = again.get_node_result(0)
        assert node["start_time"] == node["end_time"]
        assert again.result == first.result


class CountingExecutor(ct.executor.BaseExecutor):
    """A custom executor as Covalent's guide writes one."""

    def __init__(self, scale: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def setup(self, task_metadata):
        print(f"setting up node {task_metadata['node_id']}")

    def run(self, function, args, kwargs, task_metadata):
        return self.scale * function(*args, **kwargs)


class AsyncExecutor(ct.executor.AsyncBaseExecutor):
    async def run(self, function, args, kwargs, task_metadata):
        import asyncio

        await asyncio.sleep(0)
        return (task_metadata["dispatch_id"] is not None, function(*args, **kwargs))


class TestExecutorPlugins:
    def test_custom_sync_and_async_executors_run_on_ray(self, tmp_path):
        out_log = tmp_path / "out.log"

        @ct.electron(executor=CountingExecutor(scale=10, log_stdout=str(out_log)))
        def three():
            print("three here")
            return 3

        @ct.electron(executor=AsyncExecutor())
        def four():
            return 4

        @ct.electron(executor=ct.executor.LocalExecutor())
        def five():
            return 5

        @ct.lattice(workflow_executor=ct.executor.LocalExecutor())
        def workflow():
            return three(), four(), five()

        res = ct.dispatch_sync(workflow)()
        assert res.result == (30, (True, 4), 5), res.error
        node = res.get_node_result(0)
        assert node["stdout"] == "setting up node 0\nthree here\n"
        assert out_log.read_text() == node["stdout"]
        assert (
            res.lattice.transport_graph.get_node_value(0, "metadata")["executor"]
            == "CountingExecutor"
        )

    def test_dask_is_refused_with_advice(self):
        with pytest.raises(QflowConfigError, match="qflow runs every electron on Ray"):
            ct.executor.DaskExecutor()

        @ct.electron(executor="dask")
        def task():
            return 1

        @ct.lattice
        def workflow():
            return task()

        res = ct.dispatch_sync(workflow)()
        assert res.status == "FAILED"
        assert "qflow runs every electron on Ray" in res.get_node_result(0)["error"]

    def test_arguments_qflow_does_not_use_are_named(self):
        with pytest.warns(QflowWarning, match=r"\['cache_dir'\]"):
            ct.executor.LocalExecutor(cache_dir="/tmp/cache")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ct.executor.LocalExecutor(log_stdout="out.log")


class TestDraw:
    def test_draw_gives_text_and_an_svg(self, tmp_path):
        @ct.lattice
        def workflow(x):
            return add(identity(x), 1)

        drawing = workflow.draw(3)
        text = str(drawing)
        assert text.splitlines()[0] == "lattice workflow: 5 nodes"
        assert "add(2)" in text and "<- identity(0), :parameter:1(3)" in text
        svg = drawing.save(tmp_path / "graph.svg").read_text()
        assert svg.startswith("<svg") and svg.count("<rect") == 5 and "identity(0)" in svg
        assert drawing._repr_svg_() == svg
        assert (tmp_path / "graph.txt").exists() is False
        assert drawing.save(tmp_path / "graph.txt").read_text() == text + "\n"


class TestTopLevelCalls:
    def test_get_context_sync_and_config(self):
        @ct.electron
        def where():
            context = ct.get_context()
            return context.dispatch_id, context.node_id

        @ct.lattice
        def workflow():
            return where()

        dispatch_id = ct.dispatch(workflow)()
        ct.sync(dispatch_id)
        assert ct.get_result(dispatch_id).result == (dispatch_id, 0)
        assert ct.get_context().dispatch_id is None  # outside an electron
        assert ct.get_config()["qflow.home"] == ct.get_config("qflow.home")
        with pytest.raises(KeyError, match="No config key 'sdk.nope'; qflow has"):
            ct.get_config("sdk.nope")
        with pytest.warns(QflowWarning, match=r"does not use the config keys \['sdk.no_cluster'\]"):
            ct.set_config({"sdk.no_cluster": "true"})
        assert ct.get_config("sdk.no_cluster") == "true"
        ct.reload_config()
        assert "sdk.no_cluster" not in ct.get_config()


def test_covalents_module_paths_for_plugins():
    from qflow.executor.base import AsyncBaseExecutor, BaseExecutor
    from qflow.executor.utils import get_context

    assert issubclass(AsyncBaseExecutor, BaseExecutor) and get_context is ct.get_context


@ct.electron
def square_of(x):
    return x * x


@ct.lattice
def squares_of(n):
    return [square_of(i) for i in range(n)]


@ct.electron
def doze(x):
    time.sleep(x)
    return x


@ct.lattice
def dozing(x):
    return doze(x)


class TestPartialResults:
    def test_workflow_output_false_leaves_the_result_out(self):
        dispatch_id = ct.dispatch(squares_of)(3)
        full = ct.get_result(dispatch_id, wait=True)
        assert full.result == [0, 1, 4]
        light = ct.get_result(dispatch_id, wait=True, workflow_output=False)
        assert light.status == "COMPLETED" and light.result is None
        assert light.encoded_result.get_deserialized() is None
        assert light.get_node_result(0)["output"] == 0  # node outputs still load

    def test_intermediate_outputs_false_leaves_node_outputs_out(self):
        dispatch_id = ct.dispatch(squares_of)(3)
        res = ct.get_result(dispatch_id, wait=True, intermediate_outputs=False)
        assert res.result == [0, 1, 4]  # the workflow's output is built all the same
        nodes = res.get_all_node_results()
        assert {n["status"] for n in nodes} == {"COMPLETED"}
        assert all(n["output"] is None for n in nodes)
        assert set(res.get_all_node_outputs().values()) == {None}
        both_off = ct.get_result(dispatch_id, workflow_output=False, intermediate_outputs=False)
        assert both_off.result is None


class TestSublatticeIds:
    def test_a_sublattice_node_has_its_sub_dispatch_id(self):
        @ct.lattice
        def outer(n):
            return ct.electron(squares_of)(n)

        res = ct.get_result(ct.dispatch(outer)(2), wait=True)
        tg = res.lattice.transport_graph
        (node,) = [
            n for n in tg._graph.nodes if tg.get_node_value(n, "name").startswith(":sublattice:")
        ] or [n for n in tg._graph.nodes if res.get_node_result(n)["kind"] == "sublattice"]
        sub_id = tg.get_node_value(node, "sub_dispatch_id")
        assert sub_id == f"{res.dispatch_id}/{node}"
        assert ct.get_result(sub_id).result == [0, 1]

    def test_a_running_sublattice_is_cancelled_by_its_sub_dispatch_id(self):
        @ct.lattice
        def outer():
            return ct.electron(dozing)(60)

        dispatch_id = ct.dispatch(outer)()
        sub_id = f"{dispatch_id}/0"
        deadline = time.monotonic() + 60
        while ct.get_result(dispatch_id).get_node_result(0)["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(KeyError, match="still running"):  # DispatchNotFoundError
            ct.get_result(sub_id)
        assert "Cancelled sublattice dispatch" in ct.cancel(sub_id)
        res = ct.get_result(dispatch_id, wait=True, timeout=60)
        assert res.status == "CANCELLED"
        assert res.get_node_result(0)["status"] == "CANCELLED"
