"""Packed variational loops: K optimizer iterations per call on a warm, placed actor.

A loop is a dispatch of ``ceil(steps / pack)`` chunk electrons. Each chunk makes one
call on a Ray actor that holds the device (built there, never shipped) and the
optimizer, runs ``pack`` iterations, and returns the trajectory chunk, which the
results store persists like any node output: ``qflow show ID`` shows progress.
The actor sits in a STRICT_PACK placement group on the node that holds the
backend's Ray resource, so circuits never cross the network between iterations.
If the actor dies, the next chunk call starts a fresh one from the last finished
chunk's params and optimizer state.

This module is the public face; the machinery is in :mod:`qflow.loops` (the typed
spec, the actor, the chunk workflow, the result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import qflow
from qflow.exceptions import BackendError, QflowInputError
from qflow.executors.placement import ensure_feasible
from qflow.lattice import named
from qflow.loops.actor import STAT_WINDOW, stalled
from qflow.loops.optimizers import ScipyOptimizer
from qflow.loops.progress import check_callback, follow, wants_bar
from qflow.loops.result import LoopResult, collect
from qflow.loops.spec import KEEP_WARM_S, LoopSpec, prepare
from qflow.loops.workflow import parallel_loops, stop_actor, variational_loop
from qflow.remote.client import client_for
from qflow.runtime.process import current

__all__ = [
    "KEEP_WARM_S",
    "STAT_WINDOW",
    "LoopResult",
    "ScipyOptimizer",
    "minimize",
    "minimize_many",
    "stalled",
]


def _check_placement(spec: LoopSpec) -> bool:
    """Whether the loop runs from here; if so, fail now when no node can hold its actor.
    Through a qflow server (False), the server checks, and runs the actor."""
    if client_for() is not None:
        return False
    current().service()  # connected, so the check sees the cluster
    ensure_feasible(spec.bundle(), f"The variational loop's actor for backend {spec.backend!r}")
    return True


def minimize(
    circuit: Callable[..., Any],
    params: Sequence[float] | np.ndarray,
    *,
    wires: int,
    backend: Any = "lightning.qubit",
    optimizer: Any = None,
    steps: int = 100,
    pack: int = 10,
    tol: float | None = None,
    diff_method: str | None = None,
    final_repeats: int = 20,
    callback: Callable[[int, float], Any] | None = None,
    progress: bool | None = None,
    keep_warm: float | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
    about: Mapping[str, Any] | None = None,
    report: Callable[[np.ndarray, float], Mapping[str, Any]] | None = None,
) -> LoopResult:
    """Minimise ``circuit(params)`` (a QNode body returning ``qml.expval``) on a backend.

    Args:
        circuit: applies gates for ``params`` and returns one ``qml.expval(H)``.
        params: initial parameters.
        wires: the device's wire count.
        backend: a backend name or :class:`qflow.backends.Backend`.
        optimizer: a PennyLane optimizer (default ``GradientDescentOptimizer(0.4)``), or
            a callable ``(cost_fn, params) -> (new_params, cost)``.
        steps: the maximum number of optimizer steps.
        pack: optimizer steps per actor call (and per persisted chunk node).
        diff_method: the QNode gradient method; by default the backend's exact one
            (adjoint for lightning), or parameter-shift when the backend has shots.
        tol: stop when the cost changes by less than this between steps. With shots,
            stop when the last :data:`STAT_WINDOW` costs show no decrease above ``tol``
            that shot noise could not explain (see :func:`stalled`).
        final_repeats: with shots, the final cost is the mean of this many independent
            estimates, reported with its standard error (``final_cost_stderr``).
        callback: ``callback(step, cost)``, called in order for every step as its
            chunk finishes; raising from it cancels the loop.
        progress: a progress bar on stderr; by default when stderr is a terminal.
        keep_warm: seconds the loop's actor stays warm afterwards, for the next loop
            with the same backend resources to start at once (default
            :data:`KEEP_WARM_S`); it holds its CPU meanwhile. 0 stops it at once.
        name: the dispatch's name in ``qflow list`` and the UI (default: "minimize",
            the circuit's name and the backend's).
        tags: labels recorded with the dispatch, e.g. ``["h2", "sto-3g"]``.
        about: what the cost is, for the dispatch's one-line summary on its page:
            ``quantity`` (e.g. "energy"), ``unit`` (e.g. "Ha") and ``exact`` (a reference
            value; see :class:`~qflow.loops.result.LoopSummary`); and ``experiment``, a
            dict of what is computed (``{"molecule": "H2", ...}``), listed first among
            the page's inputs.
        report: ``report(final_params, final_cost) -> dict``, run on a worker once the
            loop ends: what it found in the experiment's words (a QAOA's best cut), shown
            on the dispatch's page and returned as ``LoopResult.found``.

    Example:
        >>> import pennylane as qml
        >>> from qflow.variational import minimize
        >>> def circuit(p):
        ...     qml.RX(p[0], wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> minimize(circuit, [0.5], wires=1, steps=20, pack=10).final_cost < -0.9
        True
    """
    callback = check_callback(callback)
    spec, state = prepare(
        circuit,
        params,
        wires=wires,
        backend=backend,
        optimizer=optimizer,
        steps=steps,
        pack=pack,
        tol=tol,
        diff_method=diff_method,
        final_repeats=final_repeats,
        keep_warm=KEEP_WARM_S if keep_warm is None else keep_warm,
        about=about,
        report=report,
    )
    local = _check_placement(spec)
    t0 = time.perf_counter()
    flow = named(variational_loop, name or _default_name("minimize", circuit, spec), tags)
    dispatch_id = qflow.dispatch(flow)(spec, state)
    if callback is not None or wants_bar(progress):
        try:
            follow(dispatch_id, steps, callback=callback, progress=progress)
        except BaseException:  # the dispatch is cancelled; its detached actor must go too
            if local:
                stop_actor(spec.loop_id)
            raise
    res = qflow.get_result(dispatch_id, wait=True)
    if res.status != qflow.status.COMPLETED:
        if local:
            stop_actor(spec.loop_id)
        raise BackendError(f"The variational loop {dispatch_id} ended {res.status}:\n{res.error}")
    return collect(
        res.result["chunks"], dispatch_id, time.perf_counter() - t0, res.result["summary"]
    )


def minimize_many(
    circuit: Callable[..., Any],
    starts: Sequence[Sequence[float]],
    *,
    wires: int,
    backend: Any = "lightning.qubit",
    optimizer: Any = None,
    steps: int = 100,
    pack: int = 10,
    tol: float | None = None,
    diff_method: str | None = None,
    final_repeats: int = 20,
    keep_warm: float | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
    about: Mapping[str, Any] | None = None,
    report: Callable[[np.ndarray, float], Mapping[str, Any]] | None = None,
) -> list[LoopResult]:
    """:func:`minimize` from each of ``starts`` at once: one dispatch whose loops are
    parallel sublattices, each on its own warm actor (as many run together as the
    cluster has CPUs for). Results come back in the order of ``starts``. ``name``,
    ``tags``, ``about`` and ``report`` are as for :func:`minimize`.

    Example:
        >>> import pennylane as qml
        >>> from qflow.variational import minimize_many
        >>> def circuit(p):
        ...     qml.RX(p[0], wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> [r.final_cost < -0.9 for r in minimize_many(circuit, [[0.5], [2.5]], wires=1,
        ...                                               steps=20)]
        [True, True]
    """
    if isinstance(starts, np.ndarray):
        starts = list(starts)
    if not isinstance(starts, Sequence) or not starts:
        raise QflowInputError(f"starts is a non-empty list of initial params; got {starts!r}.")
    runs = [
        prepare(
            circuit,
            start,
            wires=wires,
            backend=backend,
            optimizer=optimizer,
            steps=steps,
            pack=pack,
            tol=tol,
            diff_method=diff_method,
            final_repeats=final_repeats,
            keep_warm=KEEP_WARM_S if keep_warm is None else keep_warm,
            about=about,
            report=report,
        )
        for start in starts
    ]
    chosen = runs[0][0]
    local = _check_placement(chosen)
    t0 = time.perf_counter()
    title = name or _default_name(f"minimize × {len(runs)}", circuit, chosen)
    dispatch_id = qflow.dispatch(named(parallel_loops, title, tags))(runs)
    res = qflow.get_result(dispatch_id, wait=True)
    if res.status != qflow.status.COMPLETED:
        for spec, _ in runs if local else ():
            stop_actor(spec.loop_id)
        raise BackendError(f"The variational loops {dispatch_id} ended {res.status}:\n{res.error}")
    seconds = time.perf_counter() - t0
    return [collect(loop["chunks"], dispatch_id, seconds, loop["summary"]) for loop in res.result]


def _default_name(what: str, circuit: Any, spec: Any) -> str:
    backend = getattr(spec.backend, "name", type(spec.backend).__name__)
    return f"{what} {getattr(circuit, '__name__', 'circuit')} on {backend}"
