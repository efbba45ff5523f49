"""The layered layout: edges point down, wide layers fold, long chains need no recursion."""

from qflow.ui.layout import NODE_H, layered


def test_every_edge_points_down():
    parents = {0: [], 1: [0], 2: [0], 3: [1, 2], 4: [0, 3]}
    pos = layered(parents).nodes
    for node, ps in parents.items():
        for p in ps:
            assert pos[node].y > pos[p].y


def test_a_wide_fan_out_folds_into_rows():
    parents = {0: [], **{i: [0] for i in range(1, 1001)}, 1001: list(range(1, 1001))}
    layout = layered(parents, max_per_row=40)
    assert len(layout.nodes) == 1002
    rows = {p.y for n, p in layout.nodes.items() if p.layer == 1}
    assert 25 <= len(rows) <= 60
    assert layout.width <= 41 * 200
    assert 0.8 < layout.width / layout.height < 3  # a block, not a line
    assert layout.nodes[1001].y > max(rows)


def test_a_long_chain_and_unknown_parents():
    parents = {i: [i - 1] for i in range(1, 5000)}
    parents[0] = [-7]  # a parent that is not in the graph is ignored
    layout = layered(parents)
    assert layout.nodes[4999].layer == 4999
    assert layout.height > 4999 * NODE_H


def test_empty_graph():
    layout = layered({})
    assert layout.nodes == {} and layout.height > 0
