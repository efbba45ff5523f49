"""Planning a graph: pure, no Ray. OP chains of any length compile linearly (the last
test runs one end to end)."""

from __future__ import annotations

import sys

import qflow
from qflow._graph import NodeKind
from qflow._plan import Program, plan


@qflow.electron
def one(i=0):
    return 1


@qflow.electron
def take(x):
    return x


def _sum_graph(n):
    @qflow.lattice
    def flow():
        return take(sum(one(i) for i in range(n)))

    return flow.build_graph()


def test_sum_over_ten_thousand_outputs_plans_linearly():
    graph = _sum_graph(10_000)
    assert len(graph.topo_order()) == len(graph.nodes)
    p = plan(graph)
    consumer = p.calls[max(p.calls)]
    assert consumer.name == "take"
    assert len(consumer.dep_ids) == 10_000
    assert len(consumer.program.steps) == 10_000  # 0 + o1 + ... + o10000: one step each
    values = dict.fromkeys(consumer.dep_ids, 1)
    assert consumer.program.run(values)[-1] == 10_000


def test_accumulator_loop_deeper_than_the_recursion_limit():
    depth = sys.getrecursionlimit() * 3

    @qflow.lattice
    def flow():
        acc = one()
        for _ in range(depth):
            acc = acc + one()
        return take(acc)

    p = plan(flow.build_graph())
    consumer = p.calls[max(p.calls)]
    assert len(consumer.program.steps) == depth
    assert consumer.program.run(dict.fromkeys(consumer.dep_ids, 1))[-1] == depth + 1


def test_op_parents_are_direct_only():
    @qflow.lattice
    def flow():
        a = one()
        b = a + 1
        c = b * 2
        return take(c)

    graph = flow.build_graph()
    p = plan(graph)
    ops = [n.node_id for n in graph.nodes if n.kind is NodeKind.OP]
    post = graph.nodes[-1].node_id  # the return value's node reads take() only
    assert p.op_parents == {ops[0]: (0,), ops[1]: (ops[0],), post: (post - 1,)}
    assert p.dependants[0] == (ops[0],)
    take_call = p.calls[max(p.calls)]
    assert take_call.dep_ids == (0,)
    assert take_call.program.run({0: 5}) == [6, 12]


def test_program_literals_and_containers():
    prog = Program((("list", (("n", 0), ("c", 7))), ("getitem", (("s", 0), ("c", 1)))))
    assert prog.run({0: "x"}) == [["x", 7], 7]


def test_sum_over_outputs_runs_end_to_end():
    @qflow.lattice
    def flow(n):
        outs = [one(i) for i in range(n)]
        total = sum(outs)
        return take(total), total

    res = qflow.dispatch_sync(flow)(600)
    assert res.status == "COMPLETED" and res.result == (600, 600)
    last_op = res.get_all_node_results()[-3]  # before take() and the return value's node
    assert last_op["node_name"] == ":add:" and last_op["output"] == 600
