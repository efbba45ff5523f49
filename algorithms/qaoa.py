"""QAOA for MaxCut, as a packed variational loop, checked against brute force."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qflow.backends import get_backend
from qflow.exceptions import QflowInputError, QflowWarning
from qflow.variational import LoopResult, minimize

__all__ = ["QAOAResult", "brute_force_maxcut", "cut_size", "qaoa_maxcut"]

#: Brute force is exact but exponential; beyond this many nodes the ratio is not computed.
BRUTE_FORCE_MAX_NODES = 20


def _edges(graph: Any) -> tuple[int, list[tuple[int, int]]]:
    if hasattr(graph, "edges") and hasattr(graph, "nodes"):
        nodes = sorted(graph.nodes())
        edges = [tuple(e) for e in graph.edges()]
    else:
        try:
            edges = [(int(u), int(v)) for u, v in graph]
        except (TypeError, ValueError) as exc:
            raise QflowInputError(
                f"qaoa_maxcut takes a networkx graph or a list of (u, v) edges; got {graph!r}."
            ) from exc
        nodes = sorted({n for e in edges for n in e})
    if not edges:
        raise QflowInputError("The graph has no edges: every cut is 0.")
    if nodes != list(range(len(nodes))):
        raise QflowInputError(f"Label the graph's nodes 0..n-1; got {nodes}.")
    return len(nodes), edges


def cut_size(bits: Iterable[int], edges: Iterable[tuple[int, int]]) -> int:
    """How many edges join nodes on different sides of the cut ``bits``."""
    bits = list(bits)
    return sum(1 for u, v in edges if bits[u] != bits[v])


def brute_force_maxcut(n: int, edges: list[tuple[int, int]]) -> int:
    """The maximum cut, by trying every partition (node 0 fixed on side 0)."""
    return max(cut_size((0, *rest), edges) for rest in itertools.product((0, 1), repeat=n - 1))


@dataclass(frozen=True)
class QAOAResult:
    """The best cut found, its bitstring, the expected cut and the approximation ratio."""

    best_cut: int
    bitstring: str
    expected_cut: float
    max_cut: int | None
    ratio: float | None
    params: np.ndarray
    dispatch_id: str
    loop: LoopResult
    #: True when ``best_cut`` was measured on the (shots) backend itself; False when it
    #: comes from the exact probabilities of the optimised state.
    measured: bool = False


def qaoa_maxcut(graph: Any, p: int = 1, *, backend: Any = "lightning.qubit", optimizer: Any = None,
                steps: int = 150, pack: int = 50, tol: float | None = None,
                top_k: int = 16, diff_method: str | None = None) -> QAOAResult:
    """Solve MaxCut with depth-``p`` QAOA.

    ``ratio`` is the expected cut of the optimised state over the brute-force maximum
    (graphs of at most 20 nodes). ``best_cut`` is the best of the ``top_k`` most
    probable bitstrings; with a shots backend, the best of the bitstrings measured on it
    (``measured`` is then True). ``backend``, ``optimizer``, ``steps``, ``pack``, ``tol`` and
    ``diff_method`` are as in :func:`qflow.variational.minimize`.

    Example:
        >>> from qflow.algorithms import qaoa_maxcut
        >>> qaoa_maxcut([(0, 1), (1, 2), (2, 0)], p=1, steps=30).best_cut
        2
    """
    import pennylane as qml

    if not isinstance(p, int) or p < 1:
        raise QflowInputError(f"p (the QAOA depth) must be an int >= 1; got {p!r}.")
    n, edges = _edges(graph)
    cost_h = qml.sum(*(0.5 * (qml.Z(u) @ qml.Z(v)) - 0.5 * qml.Identity(u) for u, v in edges))
    mixer_h = qml.sum(*(qml.X(w) for w in range(n)))

    def layers(params: Any) -> None:
        for w in range(n):
            qml.Hadamard(w)
        for i in range(p):
            qml.qaoa.cost_layer(params[i], cost_h)
            qml.qaoa.mixer_layer(params[p + i], mixer_h)

    def circuit(params: Any) -> Any:
        layers(params)
        return qml.expval(cost_h)

    # A linear ramp (annealing-like) start avoids QAOA's flat regions near zero.
    init = np.array([0.8 * (i + 1) / p for i in range(p)]
                    + [0.8 * (1 - (i + 1) / p) + 0.1 for i in range(p)])
    loop = minimize(circuit, init, wires=n, backend=backend,
                    optimizer=optimizer or qml.AdamOptimizer(0.05), steps=steps, pack=pack,
                    tol=tol, diff_method=diff_method)

    chosen = get_backend(backend)
    if chosen.shots is not None:
        # With shots, what counts is what the backend measures: sample it, keep the best.
        def sample(params: Any) -> Any:
            layers(params)
            return qml.counts(wires=range(n))

        samples = chosen.qnode(sample, chosen.make_device(n))
        candidates = [int(bits, 2) for bits in samples(loop.params)]
    else:
        @qml.qnode(qml.device("default.qubit", wires=n))
        def probabilities(params: Any) -> Any:
            layers(params)
            return qml.probs(wires=range(n))

        probs = np.asarray(probabilities(loop.params))
        candidates = list(np.argsort(probs)[::-1][:top_k])
    best = max(candidates, key=lambda b: cut_size(_bits(b, n), edges))
    max_cut = brute_force_maxcut(n, edges) if n <= BRUTE_FORCE_MAX_NODES else None
    expected = -loop.final_cost
    random_cut = len(edges) / 2  # a random assignment cuts each edge with probability 1/2
    if expected < random_cut:
        warnings.warn(
            f"QAOA ended with an expected cut of {expected:.3f}, below the {random_cut:.1f} "
            "a random assignment gets: the optimizer went the wrong way or diverged. Use a "
            "smaller step (e.g. optimizer=qml.AdamOptimizer(0.05)), more steps, or "
            "restarts.", QflowWarning, stacklevel=2)
    return QAOAResult(
        best_cut=cut_size(_bits(best, n), edges), bitstring="".join(map(str, _bits(best, n))),
        expected_cut=expected, max_cut=max_cut,
        ratio=expected / max_cut if max_cut else None, params=loop.params,
        dispatch_id=loop.dispatch_id, loop=loop, measured=chosen.shots is not None)


def _bits(index: int, n: int) -> tuple[int, ...]:
    # qml.probs orders wire 0 as the most significant bit.
    return tuple(int(b) for b in format(int(index), f"0{n}b"))
