"""The transport graph on its own: expressions, node numbering, parents and order.

Pure: no Ray, no store. A lattice is only built here, never dispatched.
"""

from __future__ import annotations

import pytest

import qflow
from qflow._graph import Apply, Const, Graph, NodeKind, Ref, to_expr
from qflow.exceptions import GraphBuildError
from tests.test_plan import one, take


@qflow.electron
def pair():
    return 1, 2


def test_expressions_evaluate_from_the_values_they_reference():
    expr = Apply("add", (Ref(0), Apply("mul", (Ref(1), Const(10)))))
    assert sorted(expr.refs()) == [0, 1]
    assert expr.evaluate({0: 1, 1: 2}) == 21
    assert Apply("dict", (Const("a"), Ref(3))).evaluate({3: [1]}) == {"a": [1]}


def test_to_expr_keeps_plain_values_as_one_constant():
    value = {"a": [1, 2], "b": (3,)}
    assert to_expr(value) == Const(value)


def test_literal_arguments_become_parameter_nodes_in_covalent_order():
    @qflow.lattice
    def flow():
        return take(one(5))

    graph = flow.build_graph()
    kinds = [(n.name, n.kind) for n in graph.nodes]
    assert kinds[:3] == [
        ("one", NodeKind.ELECTRON),
        (":parameter:5", NodeKind.PARAMETER),
        ("take", NodeKind.ELECTRON),
    ]
    assert graph.nodes[0].params == (1,)
    assert graph.nodes[0].args == (Const(5),)  # the literal travels in the call too
    assert graph.nodes[2].data_parents() == [0]


def test_a_list_of_outputs_is_one_op_node_the_consumer_reads():
    @qflow.lattice
    def flow():
        return take([one(i) for i in range(3)])

    graph = flow.build_graph()
    (collect,) = [n for n in graph.nodes if n.name == ":electron_list:"]
    assert collect.kind is NodeKind.OP
    consumer = next(n for n in graph.nodes if n.name == "take")
    assert consumer.data_parents() == [collect.node_id]
    assert sorted(collect.data_parents()) == [0, 2, 4]  # each one() has a parameter node


def test_topological_order_puts_every_parent_first_and_handles_long_chains():
    @qflow.lattice
    def flow(n):
        x = one()
        for _ in range(n):
            x = take(x)
        return x

    graph = flow.build_graph(5000)  # deeper than the recursion limit
    order = graph.topo_order()
    placed = {n.node_id: i for i, n in enumerate(order)}
    assert len(order) == len(graph.nodes)
    assert all(placed[p] < placed[n.node_id] for n in graph.nodes for p in n.parents())


def test_a_wait_that_closes_a_cycle_is_refused_with_the_node_named():
    graph = Graph("g")
    a = graph.add(name="a", kind=NodeKind.ELECTRON, after=(1,))
    graph.add(name="b", kind=NodeKind.ELECTRON, args=(Ref(a.node_id),))
    with pytest.raises(GraphBuildError, match=r"cycle through (a\(0\)|b\(1\))"):
        graph.topo_order()


def test_outputs_refuse_what_needs_their_value_while_building():
    @qflow.lattice
    def decide():
        if one():
            return 1
        return 0

    with pytest.raises(GraphBuildError, match="cannot decide an `if`"):
        decide.build_graph()

    @qflow.lattice
    def unpack():
        a, b = pair()
        return take(a + b)

    graph = unpack.build_graph()
    assert [n.name for n in graph.nodes if n.kind is NodeKind.OP][:2] == [":getitem:", ":getitem:"]
