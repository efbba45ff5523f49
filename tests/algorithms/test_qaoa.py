"""QAOA MaxCut against brute force."""

import itertools

import networkx as nx
import pytest

import qflow
from qflow.algorithms import brute_force_maxcut, cut_size, qaoa_maxcut
from qflow.exceptions import QflowInputError


def test_brute_force_is_exact():
    """Brute force agrees with an independent enumeration on a small graph."""
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]
    independent = max(
        sum(1 for u, v in edges if bits[u] != bits[v])
        for bits in itertools.product((0, 1), repeat=4)
    )
    assert brute_force_maxcut(4, edges) == independent == 4


@pytest.mark.slow
def test_p3_on_3_regular_8_nodes_reaches_ratio():
    """p=3 on an 8-node 3-regular graph reaches an approximation ratio of at least 0.9."""
    graph = nx.random_regular_graph(3, 8, seed=7)
    res = qaoa_maxcut(graph, p=3, steps=150, pack=50)
    assert res.max_cut == brute_force_maxcut(8, list(graph.edges()))
    assert res.ratio >= 0.9
    assert res.best_cut == cut_size(map(int, res.bitstring), graph.edges())
    assert res.best_cut == res.max_cut


def test_triangle_and_bad_input():
    """A triangle's best cut is 2; bad graphs and depths are refused clearly."""
    triangle = qaoa_maxcut([(0, 1), (1, 2), (2, 0)], p=1, steps=20, pack=20, tags=["tri"])
    assert triangle.best_cut == 2
    # Its dispatch says what it is, and its page what it found (on a worker, once the
    # loop ended: the same bitstring this result carries).
    assert qflow.get_result(triangle.dispatch_id).lattice_name == "QAOA max-cut 3 nodes p=1"
    from qflow.runtime.process import current
    from qflow.ui.views import dispatch_view

    view = dispatch_view(current().store, triangle.dispatch_id, with_layout=False)
    assert (
        f"best cut 2 of 2; bitstring {triangle.bitstring}; approximation ratio" in (view["summary"])
    )
    assert view["inputs_text"].startswith("problem max-cut of 3 nodes and 3 edges")
    with pytest.raises(QflowInputError, match="p \\(the QAOA depth\\) must be an int >= 1"):
        qaoa_maxcut([(0, 1)], p=0)
    with pytest.raises(QflowInputError, match="Label the graph's nodes 0..n-1"):
        qaoa_maxcut([(1, 2)], p=1)
    with pytest.raises(QflowInputError, match="networkx graph or a list of"):
        qaoa_maxcut("abc", p=1)


def test_an_answer_worse_than_random_is_flagged():
    """Issue 11: a run that ends below a random assignment's expected cut warns."""
    import pennylane as qml

    from qflow.exceptions import QflowWarning

    with pytest.warns(QflowWarning, match="below the 1.5 a random assignment gets"):
        # a negative step climbs the cost: the optimizer goes the wrong way on purpose
        res = qaoa_maxcut(
            [(0, 1), (1, 2), (2, 0)],
            p=1,
            steps=20,
            pack=10,
            optimizer=qml.GradientDescentOptimizer(stepsize=-0.2),
        )
    assert res.expected_cut < 1.5


def test_with_shots_the_best_cut_is_measured_on_the_backend():
    from qflow.backends import get_backend

    res = qaoa_maxcut(
        [(0, 1), (1, 2), (2, 0)],
        p=1,
        steps=20,
        pack=10,
        backend=get_backend("default.qubit", shots=300),
    )
    assert res.measured and res.best_cut == 2


RING6 = [(i, (i + 1) % 6) for i in range(6)]


@pytest.mark.slow
def test_restarts_run_in_one_dispatch_and_keep_the_best():
    """Issue 11: three starts as parallel sublattices of one dispatch; the best is kept."""
    import qflow

    res = qaoa_maxcut(RING6, p=1, steps=30, pack=30, restarts=3, seed=4)
    assert len(res.restart_cuts) == 3 and res.expected_cut == max(res.restart_cuts)
    nodes = qflow.get_result(res.dispatch_id).get_all_node_results()
    assert sum(n["kind"] == "sublattice" for n in nodes) == 3
    assert res.inputs["restarts"] == 3 and res.inputs["seed"] == 4


def test_initial_params_are_the_start():
    res = qaoa_maxcut(RING6, p=1, steps=5, pack=5, initial_params=[0.3, 0.2])
    assert res.loop.inputs["initial_params"] == [0.3, 0.2]
    with pytest.raises(QflowInputError, match="p=2 gammas then 2 betas"):
        qaoa_maxcut(RING6, p=2, initial_params=[0.3, 0.2])


def test_warm_start_climbs_depth_by_interp():
    """Depth 2 started from depth 1's optimum (INTERP) cuts at least as well as depth 1,
    and a depth-1 result can seed a deeper run."""
    from qflow.algorithms import interpolate

    ladder = qaoa_maxcut(RING6, p=2, steps=40, pack=40, warm_start=True)
    assert len(ladder.levels) == 2 and ladder.levels[1] >= ladder.levels[0] - 1e-6
    shallow = qaoa_maxcut(RING6, p=1, steps=40, pack=40)
    deeper = qaoa_maxcut(RING6, p=2, steps=5, pack=5, warm_start=shallow)
    assert deeper.loop.inputs["initial_params"] == pytest.approx(
        interpolate(shallow.params, 2).tolist()
    )
    assert deeper.expected_cut >= shallow.expected_cut - 1e-3
    with pytest.raises(QflowInputError, match="only start a deeper run"):
        qaoa_maxcut(RING6, p=1, warm_start=shallow)
    assert interpolate([1.0, 0.5], 3).round(6).tolist() == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]


def test_qaoa_result_exports():
    import json

    res = qaoa_maxcut(RING6, p=1, steps=5, pack=5)
    data = json.loads(res.to_json())
    assert data["inputs"]["graph"]["edges"][0] == [0, 1] and data["p"] == 1
    frame = res.to_dataframe()
    assert list(frame.columns) == ["step", "expected_cut"] and len(frame) == 5
