"""QAOA for MaxCut, as a packed variational loop, checked against brute force."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qflow.backends import get_backend
from qflow.exceptions import QflowInputError, QflowWarning
from qflow.variational import LoopResult, minimize, minimize_many

__all__ = ["QAOAResult", "brute_force_maxcut", "cut_size", "interpolate", "qaoa_maxcut", "ramp"]

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
    """The best cut found, its bitstring, the expected cut and the approximation ratio.

    ``restart_cuts`` holds every restart's expected cut (the best is kept);
    ``levels`` the expected cut after each depth of a warm-started ladder.
    """

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
    p: int = 1
    restart_cuts: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result and what reproduces it, JSON-ready (the loop's trajectory too)."""
        from qflow.exports import jsonable

        return jsonable(
            {
                "best_cut": self.best_cut,
                "bitstring": self.bitstring,
                "expected_cut": self.expected_cut,
                "expected_cut_stderr": self.loop.final_cost_stderr,
                "max_cut": self.max_cut,
                "ratio": self.ratio,
                "params": self.params,
                "p": self.p,
                "measured": self.measured,
                "restart_cuts": self.restart_cuts,
                "levels": self.levels,
                "costs": self.loop.costs,
                "dispatch_id": self.dispatch_id,
                "inputs": self.inputs,
            }
        )

    def to_json(self, path: str | None = None) -> str:
        """:meth:`to_dict` as JSON text, also written to ``path`` if given."""
        from qflow.exports import write_json

        return write_json(self.to_dict(), path)

    def to_dataframe(self) -> Any:
        """One row per iteration of the kept run (``step``, ``expected_cut``)."""
        from qflow.exports import dataframe

        summary = {k: v for k, v in self.to_dict().items() if k != "costs"}
        return dataframe(
            {
                "step": list(range(len(self.loop.costs))),
                "expected_cut": [-c for c in self.loop.costs],
            },
            summary,
        )


def ramp(p: int) -> np.ndarray:
    """The linear-ramp start (annealing-like): gammas rise, betas fall. It avoids QAOA's
    flat region near zero."""
    return np.array(
        [0.8 * (i + 1) / p for i in range(p)] + [0.8 * (1 - (i + 1) / p) + 0.1 for i in range(p)]
    )


def interpolate(params: Any, p: int) -> np.ndarray:
    """Depth-``p`` params from a shallower optimum by INTERP (Zhou et al., PRX 10,
    021067, 2020): each angle schedule is linearly resampled onto one more layer,
    repeatedly until it has ``p``.

    Example:
        >>> interpolate([1.0, 0.5], 2).round(3).tolist()
        [1.0, 1.0, 0.5, 0.5]
    """
    params = np.asarray(params, dtype=float)
    q = params.size // 2
    if params.size != 2 * q or q < 1 or q > p:
        raise QflowInputError(
            f"Warm-start params must hold gammas then betas for a depth "
            f"of at most p={p}; got {params.size} values."
        )
    gammas, betas = params[:q], params[q:]
    while gammas.size < p:
        gammas, betas = _interp_step(gammas), _interp_step(betas)
    return np.concatenate([gammas, betas])


def _interp_step(angles: np.ndarray) -> np.ndarray:
    q = angles.size
    padded = np.concatenate([[0.0], angles, [0.0]])
    return np.array([(i / q) * padded[i] + ((q - i) / q) * padded[i + 1] for i in range(q + 1)])


def qaoa_maxcut(
    graph: Any,
    p: int = 1,
    *,
    backend: Any = "lightning.qubit",
    optimizer: Any = None,
    steps: int = 150,
    pack: int = 50,
    tol: float | None = None,
    top_k: int = 16,
    diff_method: str | None = None,
    initial_params: Sequence[float] | None = None,
    restarts: int = 1,
    seed: int | None = None,
    warm_start: bool | QAOAResult = False,
    final_repeats: int = 20,
    name: str | None = None,
    tags: Sequence[str] = (),
) -> QAOAResult:
    """Solve MaxCut with depth-``p`` QAOA.

    ``ratio`` is the expected cut of the optimised state over the brute-force maximum
    (graphs of at most 20 nodes). ``best_cut`` is the best of the ``top_k`` most
    probable bitstrings; with a shots backend, the best of the bitstrings measured on it
    (``measured`` is then True). ``backend``, ``optimizer``, ``steps``, ``pack``, ``tol``,
    ``diff_method`` and ``final_repeats`` are as in :func:`qflow.variational.minimize`.

    Args:
        initial_params: ``p`` gammas then ``p`` betas; default a linear ramp.
        restarts: optimise from this many starts at once (parallel sublattices, see
            :func:`qflow.variational.minimize_many`) and keep the best. The first start
            is ``initial_params`` (or the ramp), the others uniformly random angles.
        seed: seeds the random starts.
        warm_start: ``True`` climbs from depth 1 to ``p``, each depth started from the
            last one's optimum by INTERP (:func:`interpolate`); a :class:`QAOAResult` of
            a smaller depth starts from its params.
        name: the dispatch's name (default "QAOA max-cut N nodes p=P"); a warm-start
            ladder's shallower runs add "(depth d)".
        tags: labels recorded with each of its dispatches.

    Example:
        >>> from qflow.algorithms import qaoa_maxcut
        >>> qaoa_maxcut([(0, 1), (1, 2), (2, 0)], p=1, steps=30).best_cut
        2
    """
    import pennylane as qml

    if not isinstance(p, int) or isinstance(p, bool) or p < 1:
        raise QflowInputError(f"p (the QAOA depth) must be an int >= 1; got {p!r}.")
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise QflowInputError(f"restarts must be an int >= 1; got {restarts!r}.")
    n, edges = _edges(graph)
    chosen = get_backend(backend)
    if initial_params is not None and warm_start is not False:
        raise QflowInputError("Give initial_params or warm_start, not both.")
    if isinstance(warm_start, QAOAResult):
        if warm_start.p >= p:
            raise QflowInputError(
                f"warm_start is a depth-{warm_start.p} result; it can only "
                f"start a deeper run than that (p > {warm_start.p})."
            )
        first = interpolate(warm_start.params, p)
    elif warm_start is True:
        first = None
    elif warm_start is False:
        first = ramp(p) if initial_params is None else np.asarray(initial_params, float)
        if first.shape != (2 * p,):
            raise QflowInputError(
                f"initial_params holds p={p} gammas then {p} betas "
                f"({2 * p} values); got shape {first.shape}."
            )
    else:
        raise QflowInputError(
            f"warm_start is True, False or a QAOAResult of a smaller depth; got {warm_start!r}."
        )
    cost_h = qml.sum(*(0.5 * (qml.Z(u) @ qml.Z(v)) - 0.5 * qml.Identity(u) for u, v in edges))
    mixer_h = qml.sum(*(qml.X(w) for w in range(n)))
    rng = np.random.default_rng(seed)
    max_cut = brute_force_maxcut(n, edges) if n <= BRUTE_FORCE_MAX_NODES else None
    run = {
        "optimizer": optimizer or qml.AdamOptimizer(0.05),
        "steps": steps,
        "pack": pack,
        "tol": tol,
        "diff_method": diff_method,
        "final_repeats": final_repeats,
        "tags": tags,
        "about": {
            "experiment": {
                "problem": f"max-cut of {n} nodes and {len(edges)} edges"
                + (f" (best possible cut {max_cut})" if max_cut else ""),
                "depth": f"p = {p}",
            }
        },
    }
    cut = _Cut(n, edges, cost_h, mixer_h, chosen, top_k, max_cut)
    title = name or f"QAOA max-cut {n} nodes p={p}"
    levels: list[float] = []
    if first is None:  # the ladder: depth 1, then each deeper one from the last optimum
        params = ramp(1)
        for depth in range(1, p):
            rung = {**run, "name": f"{title} (depth {depth})"}
            loops = _optimise(cut, depth, [params], rung)
            levels.append(-loops[0].final_cost)
            params = interpolate(loops[0].params, depth + 1)
        first = params
    starts = [first] + [
        np.concatenate([rng.uniform(0, np.pi, p), rng.uniform(0, np.pi / 2, p)])
        for _ in range(restarts - 1)
    ]
    loops = _optimise(cut, p, starts, {**run, "name": title})
    loop = min(loops, key=lambda r: r.final_cost)
    levels.append(-loop.final_cost)
    # The best cut was found on a worker, once the loop ended (its page shows it).
    bits = tuple(int(b) for b in loop.found["bitstring"])
    expected = -loop.final_cost
    random_cut = len(edges) / 2  # a random assignment cuts each edge with probability 1/2
    if expected < random_cut:
        warnings.warn(
            f"QAOA ended with an expected cut of {expected:.3f}, below the {random_cut:.1f} "
            "a random assignment gets: the optimizer went the wrong way or diverged. Use a "
            "smaller step (e.g. optimizer=qml.AdamOptimizer(0.05)), more steps, or "
            "restarts.",
            QflowWarning,
            stacklevel=2,
        )
    inputs = {
        **loop.inputs,
        "graph": {"nodes": n, "edges": [list(e) for e in edges]},
        "p": p,
        "restarts": restarts,
        "seed": seed,
        "top_k": top_k,
        "warm_start": warm_start
        if isinstance(warm_start, bool)
        else f"depth-{warm_start.p} result {warm_start.dispatch_id}",
    }
    return QAOAResult(
        best_cut=cut_size(bits, edges),
        bitstring="".join(map(str, bits)),
        expected_cut=expected,
        max_cut=max_cut,
        ratio=expected / max_cut if max_cut else None,
        params=loop.params,
        dispatch_id=loop.dispatch_id,
        loop=loop,
        measured=chosen.shots is not None,
        p=p,
        restart_cuts=[-r.final_cost for r in loops],
        levels=levels,
        inputs=inputs,
    )


def _layers(params: Any, n: int, p: int, cost_h: Any, mixer_h: Any) -> None:
    import pennylane as qml

    for w in range(n):
        qml.Hadamard(w)
    for i in range(p):
        qml.qaoa.cost_layer(params[i], cost_h)
        qml.qaoa.mixer_layer(params[p + i], mixer_h)


@dataclass(frozen=True)
class _Cut:
    """One max-cut problem's circuits, and its ``report``: the best cut among the final
    state's likeliest bitstrings (or, with shots, the ones the backend measures)."""

    n: int
    edges: list[tuple[int, int]]
    cost_h: Any
    mixer_h: Any
    backend: Any
    top_k: int
    max_cut: int | None

    def layers(self, params: Any, p: int) -> None:
        _layers(params, self.n, p, self.cost_h, self.mixer_h)

    def report(self, params: np.ndarray, final_cost: float) -> dict[str, Any]:
        import pennylane as qml

        n, p = self.n, len(params) // 2
        if self.backend.shots is not None:

            def sample(params: Any) -> Any:
                self.layers(params, p)
                return qml.counts(wires=range(n))

            samples = self.backend.qnode(sample, self.backend.make_device(n))
            candidates = [int(bits, 2) for bits in samples(params)]
        else:

            @qml.qnode(qml.device("default.qubit", wires=n))
            def probabilities(params: Any) -> Any:
                self.layers(params, p)
                return qml.probs(wires=range(n))

            probs = np.asarray(probabilities(params))
            candidates = list(np.argsort(probs)[::-1][: self.top_k])
        best = max(candidates, key=lambda b: cut_size(_bits(b, n), self.edges))
        cut = cut_size(_bits(best, n), self.edges)
        found: dict[str, Any] = {
            "best cut": cut if self.max_cut is None else f"{cut} of {self.max_cut}",
            "bitstring": "".join(map(str, _bits(best, n))),
        }
        if self.max_cut:
            found["approximation ratio"] = round(-final_cost / self.max_cut, 4)
        return found


def _optimise(cut: _Cut, p: int, starts: list[np.ndarray], run: dict[str, Any]) -> list[LoopResult]:
    import pennylane as qml

    def circuit(params: Any) -> Any:
        cut.layers(params, p)
        return qml.expval(cut.cost_h)

    n, backend = cut.n, cut.backend
    if len(starts) == 1:
        return [minimize(circuit, starts[0], wires=n, backend=backend, report=cut.report, **run)]
    return minimize_many(
        circuit, [list(s) for s in starts], wires=n, backend=backend, report=cut.report, **run
    )


def _bits(index: int, n: int) -> tuple[int, ...]:
    # qml.probs orders wire 0 as the most significant bit.
    return tuple(int(b) for b in format(int(index), f"0{n}b"))
