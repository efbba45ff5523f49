"""A variational loop's typed spec (what it runs, on which backend, in which chunks),
built and checked once before any dispatch, and the state one chunk hands the next."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cloudpickle
import numpy as np

from qflow.exceptions import QflowConfigError

__all__ = [
    "KEEP_WARM_S",
    "ChunkState",
    "LoopSpec",
    "chunk_sizes",
    "new_loop_id",
    "prepare",
    "versions",
]

#: Seconds a loop's actor stays warm after the loop, for the next one to reuse.
KEEP_WARM_S = 10.0


@dataclass(frozen=True, eq=False)
class LoopSpec:
    """One variational loop: the circuit, its device, the optimizer's budget and how
    its steps are packed into chunks.

    Every chunk node of a loop takes the same spec. It pickles once (its bytes are
    cached) and unpickles once per process (see :func:`_from_bytes`): a circuit can
    close over a large Hamiltonian, and each chunk would otherwise pay for it again.

    Attributes:
        loop_id: names the loop's actor in the warm pool.
        circuit: the QNode body, a function of the params array.
        wires: the device's wire count.
        backend: a :class:`qflow.backends.Backend`.
        steps: the most optimizer steps the loop runs.
        pack: optimizer steps per chunk (one actor call, one stored node).
        tol: the stopping tolerance, or None.
        diff_method: the QNode gradient method, decided before dispatch.
        final_repeats: with shots, the estimates averaged for the final cost.
        keep_warm: seconds the actor stays warm after the loop.
        inputs: what reproduces the run, added to the loop's last chunk.
        report: ``report(params, final_cost)`` gives what the loop found in the
            experiment's words (a QAOA's best cut), for its summary; or None.

    Example:
        >>> spec = LoopSpec("a1", print, 1, None, steps=25, pack=10)
        >>> spec.chunk_sizes
        [10, 10, 5]
    """

    loop_id: str
    circuit: Callable[..., Any]
    wires: int
    backend: Any
    steps: int
    pack: int
    tol: float | None = None
    diff_method: str | None = None
    final_repeats: int = 1
    keep_warm: float = KEEP_WARM_S
    inputs: Mapping[str, Any] = field(default_factory=dict)
    report: Callable[[np.ndarray, float], Mapping[str, Any]] | None = None

    @property
    def chunk_sizes(self) -> list[int]:
        """The steps of each chunk: ``pack`` each, the last one what remains."""
        return chunk_sizes(self.steps, self.pack)

    def bundle(self) -> dict[str, float]:
        """The Ray resources the loop's actor holds: a CPU and the backend's own."""
        return {"CPU": 1.0, **self.backend.ray_resources()}

    def __repr__(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:  # every chunk's input text starts with it
        return (
            f"LoopSpec({self.loop_id}, backend={self.backend!r}, steps={self.steps}, "
            f"pack={self.pack})"
        )

    def describe(self) -> str:
        """What the loop runs, as a researcher reads it: the experiment (its ``about``),
        the backend with shots, seed and noise, the optimizer, the budget and the start.

        Example:
            >>> print(LoopSpec("a1", print, 2, None, steps=20, pack=10, inputs={
            ...     "backend": {"name": "lightning.qubit", "shots": None},
            ...     "optimizer": {"class": "pennylane.AdamOptimizer", "stepsize": 0.05},
            ...     "initial_params": [0.0]}).describe())
            backend lightning.qubit, exact expectation values (no shots)
            optimizer AdamOptimizer(stepsize=0.05)
            up to 20 steps in chunks of 10, 2 qubits
            initial params [0.0]
        """
        from qflow.core.text import value_text

        got = self.inputs
        lines = []
        experiment = (got.get("about") or {}).get("experiment")
        if experiment:
            lines += [f"{k} {v}" for k, v in experiment.items() if v not in (None, "")]
        b = got.get("backend") or {}
        shots = b.get("shots")
        text = f"backend {b.get('name', self.backend)}, " + (
            f"{shots} shots" if shots else "exact expectation values (no shots)"
        )
        if b.get("seed") is not None:
            text += f", seed {b['seed']}"
        if b.get("noise"):
            text += f", noise {b['noise']}"
        lines.append(text)
        o = dict(got.get("optimizer") or {})
        kind = str(o.pop("class", "optimizer")).rsplit(".", 1)[-1]
        lines.append(f"optimizer {kind}({', '.join(f'{k}={v}' for k, v in o.items())})")
        budget = f"up to {self.steps} steps in chunks of {self.pack}"
        if self.tol is not None:
            budget += f", tol {self.tol:g}"
        if self.diff_method:
            budget += f", gradient {self.diff_method}"
        lines.append(budget + f", {self.wires} qubits")
        lines.append(f"initial params {value_text(got.get('initial_params'))}")
        return "\n".join(lines)

    @cached_property
    def _bytes(self) -> bytes:
        return cloudpickle.dumps(tuple(getattr(self, f) for f in self.__dataclass_fields__))

    def __reduce__(self) -> tuple[Callable[[bytes], LoopSpec], tuple[bytes]]:
        return _from_bytes, (self._bytes,)


class ChunkState(dict[str, Any]):
    """A loop's state between chunks: a plain dict of params, optimizer and costs, with
    a one-line text.

    Each chunk's input and output text is written to the store, on the loop's actor
    beside its computing thread. Abbreviating the whole dict (an array, a pickled
    optimizer, cost histories) would cost a small VQE iteration most of its time; this
    text says what a reader of the store wants to know, at once.

    Example:
        >>> ChunkState(step=3, last_cost=-1.1372, converged=False, restarts=0)
        ChunkState(step=3, last_cost=-1.1372, converged=False)
    """

    def __plain_pickle__(self) -> bool:
        """Whether the standard (C) pickler can write it: a chunk's state holds arrays,
        numbers, text and the optimizer's bytes, and only the last chunk's holds the
        loop's inputs, which may be code. (cloudpickle takes several times longer, a
        cost every chunk of a small loop pays.)"""
        return "inputs" not in self

    def __reduce__(self) -> tuple[Any, ...]:
        """Float params as their bytes: numpy's own pickling of a small array costs
        more than the rest of the state, and a chunk's state is pickled twice (for the
        store and as its Ray value). Equal states still pickle to equal bytes."""
        params = self.get("params")
        if type(params) is np.ndarray and params.dtype == np.float64:
            rest = {k: v for k, v in self.items() if k != "params"}
            return _chunk_state, (params.tobytes(), params.shape, rest)
        return ChunkState, (dict(self),)

    def __repr__(self) -> str:
        cost = self.get("final_cost", self.get("last_cost"))
        text = (
            f"ChunkState(step={self.get('step')}, last_cost={cost!r}, "
            f"converged={self.get('converged')}"
        )
        if self.get("restarts"):
            text += f", restarts={self['restarts']}"
        return text + ")"


def _chunk_state(params: bytes, shape: tuple[int, ...], rest: dict[str, Any]) -> ChunkState:
    """The state :meth:`ChunkState.__reduce__` pickled: its params a writeable array."""
    return ChunkState(rest, params=np.frombuffer(params).reshape(shape).copy())


_LOADED: dict[bytes, LoopSpec] = {}


def _from_bytes(data: bytes) -> LoopSpec:
    """The spec ``data`` pickles, unpickled once per process for the loop's chunks."""
    spec = _LOADED.get(data)
    if spec is None:
        spec = LoopSpec(*cloudpickle.loads(data))
        spec.__dict__["_bytes"] = data
        if len(_LOADED) >= 16:  # a few loops at a time share a process
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[data] = spec
    return spec


def chunk_sizes(steps: int, pack: int) -> list[int]:
    """``steps`` in chunks of ``pack``.

    Example:
        >>> chunk_sizes(7, 3)
        [3, 3, 1]
    """
    return [min(pack, steps - i * pack) for i in range(math.ceil(steps / pack))]


def new_loop_id() -> str:
    """A fresh loop id."""
    return uuid.uuid4().hex[:12]


def prepare(
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
    keep_warm: float = KEEP_WARM_S,
    about: Mapping[str, Any] | None = None,
    report: Callable[[np.ndarray, float], Mapping[str, Any]] | None = None,
) -> tuple[LoopSpec, ChunkState]:
    """Validate a loop, before any dispatch, and return its spec and initial state for
    :func:`~qflow.loops.workflow.variational_loop`; :func:`qflow.variational.minimize`
    documents the arguments."""
    import pennylane as qml

    from qflow.backends import get_backend
    from qflow.loops.checks import check_circuit
    from qflow.loops.optimizers import describe_optimizer

    for name, value, low in (
        ("steps", steps, 1),
        ("pack", pack, 1),
        ("wires", wires, 1),
        ("final_repeats", final_repeats, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise QflowConfigError(f"{name} must be an int >= {low}; got {value!r}.")
    backend = get_backend(backend)
    # Decided here, before any dispatch: a wrong method fails now, not in the worker.
    method = backend.gradient_method(diff_method)
    optimizer = optimizer if optimizer is not None else qml.GradientDescentOptimizer(0.4)
    params = np.asarray(params, dtype=float)
    check_circuit(circuit, params, wires, optimizer)
    if tol is not None and (
        not isinstance(tol, int | float) or isinstance(tol, bool) or not tol >= 0
    ):
        raise QflowConfigError(f"tol must be None or a number >= 0; got {tol!r}.")
    if not isinstance(keep_warm, int | float) or isinstance(keep_warm, bool) or not keep_warm >= 0:
        raise QflowConfigError(f"keep_warm is seconds >= 0; got {keep_warm!r}.")
    if report is not None and not callable(report):
        raise QflowConfigError(
            f"report is a function (params, final_cost) -> dict, or None; got {report!r}."
        )
    spec = LoopSpec(
        loop_id=new_loop_id(),
        circuit=circuit,
        wires=wires,
        backend=backend,
        steps=steps,
        pack=pack,
        tol=tol,
        diff_method=method,
        final_repeats=final_repeats,
        keep_warm=float(keep_warm),
        inputs={
            "backend": backend.describe(),
            "optimizer": describe_optimizer(optimizer),
            "diff_method": method,
            "steps": steps,
            "pack": pack,
            "tol": tol,
            "final_repeats": final_repeats if backend.shots is not None else 1,
            "initial_params": params.tolist(),
            "wires": wires,
            "versions": versions(),
            # What the loop computes, in the experiment's words (see LoopSummary).
            **({"about": dict(about)} if about else {}),
        },
        report=report,
    )
    state = ChunkState(
        params=params,
        optimizer=cloudpickle.dumps(optimizer),
        costs=[],
        last_cost=None,
        converged=False,
        step=0,
        restarts=0,
    )
    return spec, state


def versions() -> dict[str, str]:
    """The versions that decide a run's numbers."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in (
        "qflow-runtime",
        "pennylane",
        "pennylane-lightning",
        "amazon-braket-sdk",
        "numpy",
        "scipy",
        "ray",
        "pyscf",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out
