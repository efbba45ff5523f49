"""A TaskCall travels to Ray as one byte string and comes back whole (no Ray needed)."""

import qflow
from qflow._plan import plan
from qflow._task import CallTemplate, TaskCall


class Point:  # not a plain literal: the spec goes through cloudpickle
    def __init__(self, x):
        self.x = x


@qflow.electron
def use(a, b=None, **kw):
    return a


@qflow.lattice
def flow():
    first = use(1, b="two", c=3.0)
    return use(first, b=Point(4)), use([first, 5])


def test_every_call_round_trips():
    the_plan = plan(flow.build_graph())
    for nid, pc in the_plan.calls.items():
        template = CallTemplate("d", pc.name, pc.kind, pc.fn, pc.options)
        call = TaskCall(
            template=template,
            node_id=nid,
            program=pc.program,
            args=pc.args,
            kwargs=pc.kwargs,
            dep_ids=pc.dep_ids,
        )
        wire = call.to_wire()
        assert isinstance(wire, bytes)
        back = TaskCall.from_wire(wire)
        assert (back.node_id, back.program, back.dep_ids) == (nid, pc.program, pc.dep_ids)
        assert back.name == pc.name and back.options == pc.options
        assert [o[0] for o in back.args] == [o[0] for o in pc.args]
        assert sorted(back.kwargs) == sorted(pc.kwargs)
        point = back.kwargs.get("b")
        if point is not None and point[0] == "c" and not isinstance(point[1], str):
            assert point[1].x == 4


def test_calls_sent_together_as_parts_share_their_template_and_literals():
    """A loop's chunks go to its actor in one call, each as its parts: pickled
    together, the template and a literal they share are written once, not per chunk."""
    import cloudpickle

    shared = Point(list(range(2000)))  # the loop's spec, in every chunk

    @qflow.lattice
    def chain():
        return [use(shared, b=i) for i in range(16)]

    the_plan = plan(chain.build_graph())
    name, kind, fn, options = next(
        (pc.name, pc.kind, pc.fn, pc.options) for pc in the_plan.calls.values()
    )
    template = CallTemplate("d", name, kind, fn, options)
    calls = [
        TaskCall(template, nid, pc.program, pc.args, pc.kwargs, pc.dep_ids)
        for nid, pc in the_plan.calls.items()
        if pc.name == "use"
    ]
    one = len(cloudpickle.dumps([calls[0].parts()]))
    together = len(cloudpickle.dumps([c.parts() for c in calls]))
    assert together < 2 * one < len(calls) * one
    for call, back in zip(calls, cloudpickle.loads(cloudpickle.dumps([c.parts() for c in calls]))):
        again = TaskCall.from_parts(*back)
        assert (again.node_id, again.name, again.kwargs) == (call.node_id, call.name, call.kwargs)
        assert again.args[0][1].x == shared.x


def test_a_chunk_state_is_pickled_plainly_unless_it_carries_the_loops_inputs():
    import pickle

    import cloudpickle
    import numpy as np

    from qflow.core.task import dumps_value
    from qflow.loops.spec import ChunkState

    state = ChunkState(params=np.arange(3.0), optimizer=b"opt", costs=[1.0], step=1)
    assert dumps_value(state) == pickle.dumps(state, protocol=4)
    last = ChunkState(state, inputs={"cost": lambda x: x + 1})  # code: cloudpickle only
    assert cloudpickle.loads(dumps_value(last))["inputs"]["cost"](1) == 2


def test_a_chunk_state_round_trips_with_float_params_as_bytes():
    """ChunkState pickles float params as their bytes (numpy's own pickling costs a
    small loop more than the rest of its state); what comes back is equal, writeable,
    and pickles to the same bytes again (the store names blobs by their content)."""
    import copy
    import pickle

    import cloudpickle
    import numpy as np

    from qflow.core.task import dumps_value
    from qflow.loops.spec import ChunkState

    state = ChunkState(params=np.arange(6.0).reshape(2, 3), optimizer=b"opt", step=3)
    for back in (
        pickle.loads(dumps_value(state)),
        cloudpickle.loads(cloudpickle.dumps(state)),
        copy.deepcopy(state),
    ):
        assert type(back) is ChunkState and back.keys() == state.keys()
        assert np.array_equal(back["params"], state["params"]) and back["params"].flags.writeable
        assert dumps_value(back) == dumps_value(state)
    listed = ChunkState(params=[0.1, 0.2], step=1)  # not a float array: pickled as it is
    assert pickle.loads(pickle.dumps(listed)) == listed
