"""Packed variational loops: K optimizer iterations per call on a warm, placed actor.

A loop is a dispatch of ``ceil(steps / pack)`` chunk electrons. Each chunk makes one
call on a Ray actor that holds the device (built there, never shipped) and the
optimizer, runs ``pack`` iterations, and returns the trajectory chunk, which the
results store persists like any node output: ``qflow show ID`` shows progress.
The actor sits in a STRICT_PACK placement group on the node that holds the
backend's Ray resource, so circuits never cross the network between iterations.
If the actor dies, the next chunk call starts a fresh one from the last finished
chunk's params and optimizer state.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, cast

import cloudpickle
import numpy as np
import ray

import qflow
from qflow.core.tracebacks import remote_cause
from qflow.exceptions import BackendError, QflowConfigError, QflowInputError
from qflow.executors.placement import ensure_feasible
from qflow.executors.ray import run_wire
from qflow.loops import pool as loop_pool
from qflow.loops import warm as warm
from qflow.loops.executor import Held, NotServingError
from qflow.loops.progress import check_callback, follow, wants_bar
from qflow.runtime.process import current

__all__ = ["LoopResult", "ScipyOptimizer", "minimize", "minimize_many"]


@dataclass(frozen=True)
class LoopResult:
    """What a variational loop produced.

    Attributes:
        costs: the cost at each iteration's starting params, in order.
        final_cost: the cost at the final params.
        params: the final params.
        iterations: how many optimizer steps ran.
        converged: whether ``tol`` stopped the loop early.
        seconds: wall time of the dispatch.
        chunk_seconds: time spent inside the actor, per chunk.
        actor_node_ids: the Ray node each chunk ran on.
        actor_restarts: how often a dead actor was replaced.
        dispatch_id: the dispatch; its nodes are the chunks.
        final_cost_stderr: with shots, the standard error of ``final_cost``, which is
            then the mean of ``final_repeats`` independent estimates; None when exact.
        inputs: what reproduces the run: backend (shots, seed, noise), optimizer,
            gradient method, steps, pack, tol, initial params, versions.
    """

    costs: list[float]
    final_cost: float
    params: np.ndarray
    iterations: int
    converged: bool
    seconds: float
    chunk_seconds: list[float]
    actor_node_ids: list[str]
    actor_restarts: int
    dispatch_id: str
    extra: dict[str, Any] = field(default_factory=dict)
    final_cost_stderr: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values (arrays become lists).

        Example:
            >>> LoopResult([1.0, 0.5], 0.4, np.zeros(1), 2, False, 1.0, [1.0], ["n"], 0,
            ...            "d").to_dict()["final_cost"]
            0.4
        """
        from qflow.exports import jsonable

        out: dict[str, Any] = jsonable({f.name: getattr(self, f.name) for f in fields(self)})
        return out

    def to_json(self, path: str | None = None) -> str:
        """:meth:`to_dict` as JSON text, also written to ``path`` if given."""
        from qflow.exports import write_json

        return write_json(self.to_dict(), path)

    def to_dataframe(self) -> Any:
        """One row per iteration (``step``, ``cost``), with the run's scalar results and
        inputs in ``DataFrame.attrs``. Needs pandas."""
        from qflow.exports import dataframe

        summary = {k: v for k, v in self.to_dict().items() if k != "costs"}
        return dataframe({"step": list(range(len(self.costs))), "cost": self.costs}, summary)


class ScipyOptimizer:
    """A ``scipy.optimize.minimize`` method as a loop optimizer: each chunk of ``pack``
    steps is one SciPy run with ``maxiter=pack``, warm-started from the last params.

    Args:
        method: e.g. ``"COBYLA"``, ``"Nelder-Mead"`` (gradient-free) or ``"BFGS"``.
        options: further SciPy options.
    """

    def __init__(self, method: str = "COBYLA", **options: Any) -> None:
        self.method, self.options = method, options

    def run_chunk(
        self, qnode: Any, params: Any, k: int, tol: float | None
    ) -> tuple[np.ndarray, list[float], bool]:
        from scipy.optimize import minimize as scipy_minimize

        costs: list[float] = []

        def record(xk: np.ndarray) -> None:  # one entry per SciPy iteration
            costs.append(float(qnode(xk)))

        res = scipy_minimize(
            lambda x: float(qnode(x)),
            np.asarray(params, float),
            method=self.method,
            tol=tol,
            callback=record,
            options={**self.options, "maxiter": k},
        )
        costs = costs[:k] or [float(res.fun)]
        return np.asarray(res.x), costs, bool(res.success and tol is not None and len(costs) < k)


class ChunkState(dict[str, Any]):
    """A loop's state between chunks: a plain dict of params, optimizer and costs, with
    a one-line text.

    Each chunk's input and output text is written to the store. Abbreviating the whole
    dict (an array, a pickled optimizer, cost histories) took about 1 ms a chunk on the
    loop's actor, beside its computing thread: most of a small VQE iteration. This text
    says what a reader of the store wants to know, at once.

    Example:
        >>> ChunkState(step=3, last_cost=-1.1372, converged=False, restarts=0)
        ChunkState(step=3, last_cost=-1.1372, converged=False)
    """

    def __repr__(self) -> str:
        cost = self.get("final_cost", self.get("last_cost"))
        text = (
            f"ChunkState(step={self.get('step')}, last_cost={cost!r}, "
            f"converged={self.get('converged')}"
        )
        if self.get("restarts"):
            text += f", restarts={self['restarts']}"
        return text + ")"


class _LoopActor:
    """Holds the warm device, the QNode and runs chunks of optimizer steps.

    Chunks reach it as node calls from the loop executor (:meth:`run_node`), or, for a
    loop's first chunk, as :meth:`run` calls from a chunk's task. The executor sends
    every later chunk at once: the calls wait in this actor's queue, and each takes the
    output the one before left here (:class:`~qflow.loops.executor.Held`), so the
    actor runs them back to back.

    A chunk computes on the thread that received it: with the calls queued here there
    is no round trip through the driver to hide, and a small circuit's compute holds
    the GIL, so a second thread would only slow each chunk.
    """

    #: The instance in this process, if it is a loop actor's (see :func:`run_chunk`).
    in_this_process: ClassVar[_LoopActor | None] = None

    def __init__(self) -> None:
        # Imported now, while the actor waits in the pool, not when a loop needs it.
        import pennylane  # noqa: F401

        _LoopActor.in_this_process = self
        self.loop_id: str | None = None
        self._held: dict[Held, Any] = {}  # chunk outputs kept for the next chunk

    def load(self, loop_id: str, spec_blob: bytes) -> None:
        """Serve ``loop_id``: build its device and QNode (once per loop)."""
        if loop_id == self.loop_id:
            return
        self._held.clear()
        spec = cloudpickle.loads(spec_blob)
        self.backend = spec["backend"]
        self.device = self.backend.make_device(spec["wires"])
        self.qnode = self.backend.qnode(spec["circuit"], self.device, spec.get("diff_method"))
        self.tol = spec["tol"]
        self.final_repeats = spec.get("final_repeats", 1)
        self.inputs = spec.get("inputs")
        self.loop_id = loop_id

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    @ray.method(num_returns=2)
    def run_node(
        self, wire: bytes, *dep_values: Any, keep: Held | None = None
    ) -> tuple[Any, bytes]:
        """Run a chunk's node here, sent by the loop executor; ``keep`` names its output
        (or error) for the next chunk, which takes it as a :class:`Held` argument."""
        try:
            inputs = [self._take(v) if isinstance(v, Held) else v for v in dep_values]
            value, outcome = run_wire(wire, *inputs)
        except BaseException as exc:
            if keep is not None:  # the next chunk fails with it, as with a Ray argument
                self._held[keep] = exc
            raise
        if keep is not None:
            self._held[keep] = value
        return value, outcome

    def _take(self, held: Held) -> Any:
        if held not in self._held:  # a new actor, or one that served another loop since
            raise NotServingError(f"This actor does not hold the output of {held}.")
        value = self._held.pop(held)
        if isinstance(value, BaseException):
            raise value
        return value

    def run(self, loop_id: str, state: dict[str, Any], k: int, last: bool) -> ChunkState:
        """Run ``k`` steps from ``state``; ``last`` adds the final estimate and inputs."""
        from pennylane import numpy as pnp

        if loop_id != self.loop_id:  # never compute for the wrong loop
            raise NotServingError(f"This actor serves loop {self.loop_id}, not {loop_id}.")
        t0 = time.perf_counter()
        opt = cloudpickle.loads(state["optimizer"])
        params = pnp.array(state["params"], requires_grad=True)
        costs: list[float] = []
        converged = False
        prev = state["last_cost"]
        if isinstance(opt, ScipyOptimizer):
            params, costs, converged = opt.run_chunk(self.qnode, params, k, self.tol)
        history = list(state.get("history", []))
        for _ in range(0 if isinstance(opt, ScipyOptimizer) else k):
            if hasattr(opt, "step_and_cost"):
                params, cost = opt.step_and_cost(self.qnode, params)
            else:
                params, cost = opt(self.qnode, params)
            costs.append(float(cost))
            history = (history + [costs[-1]])[-STAT_WINDOW:]
            if self.tol is not None and self.backend.shots is not None:
                if stalled(history, self.tol):
                    converged = True
                    break
            elif self.tol is not None and prev is not None and abs(prev - costs[-1]) < self.tol:
                converged = True
                break
            prev = costs[-1]
        out = ChunkState(
            {
                "params": np.asarray(params, dtype=float),
                "optimizer": cloudpickle.dumps(opt),
                "costs": costs,
                "last_cost": costs[-1] if costs else prev,
                "converged": converged,
                "step": state["step"] + len(costs),
                "node_id": self.node_id(),
                "seconds": time.perf_counter() - t0,
                "restarts": state["restarts"],
                "history": history,
            }
        )
        if last or converged:
            out["inputs"] = self.inputs
            out["final_cost"], out["final_cost_stderr"] = self.final_estimate(params)
        return out

    def final_estimate(self, params: Any) -> tuple[float, float | None]:
        """The cost at ``params``: exact, or with shots the mean of ``final_repeats``
        independent estimates and its standard error."""
        if self.backend.shots is None or self.final_repeats < 2:
            return float(self.qnode(params)), None
        values = np.array([float(self.qnode(params)) for _ in range(self.final_repeats)])
        return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


#: Iterations the shot-noise stopping test looks back over.
STAT_WINDOW = 10


def stalled(history: Sequence[float], tol: float) -> bool:
    """Whether noisy costs have stopped improving: over the last :data:`STAT_WINDOW`
    iterations, the decrease of a least-squares line is below ``tol`` or below twice
    its own standard error (no improvement distinguishable from shot noise).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> stalled(list(-1.0 + 0.01 * rng.standard_normal(10)), 1e-6)
        True
        >>> stalled([1.0 - 0.1 * i for i in range(10)], 1e-6)
        False
    """
    if len(history) < STAT_WINDOW:
        return False
    y = np.asarray(history[-STAT_WINDOW:], dtype=float)
    x = np.arange(y.size, dtype=float) - (y.size - 1) / 2
    slope = float(x @ y / (x @ x))
    residual = y - y.mean() - slope * x
    slope_se = math.sqrt(float(residual @ residual) / (y.size - 2) / float(x @ x))
    decrease = -slope * (y.size - 1)
    return decrease < max(tol, 2 * slope_se * (y.size - 1))


#: Seconds a loop's actor stays warm after the loop, for the next one to reuse.
KEEP_WARM_S = 10.0


def _actor_name(loop_id: str) -> str:
    """The name a loop's actor handle is cached under in each process."""
    return f"qflow-loop-{loop_id}"


def _bundle(spec: dict[str, Any]) -> dict[str, float]:
    return {"CPU": 1.0, **spec["backend"].ray_resources()}


def _start_actor(loop_id: str, spec_blob: bytes) -> Any:
    """An actor for the loop, from the warm pool or new, with the loop's spec loaded."""
    spec = cloudpickle.loads(spec_blob)
    bundle = _bundle(spec)
    for attempt in range(3):
        name = loop_pool.call_pool(
            "acquire",
            loop_id,
            loop_pool.bundle_key(bundle),
            bundle,
            _LoopActor,
            f"The variational loop's actor for backend {spec['backend']!r}",
        )
        try:
            actor = ray.get_actor(name, namespace=warm.NAMESPACE)
            break
        except ValueError:  # it died while idle in the pool: the pool forgets it
            loop_pool.call_pool("discard", loop_id)
            if attempt == 2:
                raise
    try:
        ray.get(actor.load.remote(loop_id, spec_blob))
    except ray.exceptions.RayTaskError as exc:  # the backend could not build its device
        loop_pool.call_pool("discard", loop_id)
        raise remote_cause(exc) from None
    return actor


def _stop_actor(loop_id: str, keep_s: float = 0.0) -> None:
    """End the loop's hold on its actor: back to the pool for ``keep_s`` seconds, or
    stopped now (always after a failure)."""
    warm.forget(_actor_name(loop_id))
    if keep_s > 0:
        loop_pool.call_pool("release", loop_id, keep_s)
    else:
        loop_pool.call_pool("discard", loop_id)


@qflow.electron(num_cpus=0, executor="loop")
def run_chunk(
    loop_id: str,
    spec_blob: bytes,
    state: dict[str, Any],
    k: int,
    last: bool,
    restarted: bool = False,
    ahead: Any = None,
) -> dict[str, Any]:
    """Run ``k`` optimizer steps on the loop's actor, starting one if needed.

    The loop executor (:mod:`qflow.loops.executor`) runs this on the loop's actor
    itself once one serves the loop, and as a plain task before that, or with
    ``restarted`` after the actor died under an earlier attempt. ``ahead`` is ignored:
    loops dispatched by qflow before November 2026 pass it, and a store they are in,
    resumed by ``qflow start`` after an upgrade, still runs their remaining chunks.
    Drop it with the store migration that drops the old module paths
    (:mod:`qflow._moved`).
    """
    if state["converged"]:
        return ChunkState({**state, "costs": [], "seconds": 0.0})
    here = _LoopActor.in_this_process
    if here is not None:  # called on an actor by the loop executor
        out = here.run(loop_id, state, k, last)
        _log_costs(out["costs"], state["step"])
        return out
    sent = {"state": state}

    def on_death() -> None:
        # Resume from this chunk's input: the last finished chunk's params.
        _stop_actor(loop_id)
        sent["state"] = ChunkState(sent["state"], restarts=sent["state"]["restarts"] + 1)

    if restarted:  # the actor died under an earlier attempt of this chunk
        on_death()

    try:
        out = warm.call(
            _actor_name(loop_id),
            lambda: _start_actor(loop_id, spec_blob),
            lambda actor: actor.run.remote(loop_id, sent["state"], k, last),
            on_death=on_death,
        )
    except BaseException:
        _stop_actor(loop_id)
        raise
    _log_costs(out["costs"], sent["state"]["step"])
    return cast(dict[str, Any], out)


def _log_costs(costs: list[float], first_step: int) -> None:
    for i, cost in enumerate(costs):  # charted live by `qflow ui`
        qflow.log_metric("cost", cost, step=first_step + i)


@qflow.electron(num_cpus=0)
def close_loop(loop_id: str, spec_blob: bytes, last_state: dict[str, Any]) -> bool:
    """Hand the loop's actor back to the warm pool for the loop's ``keep_warm`` seconds
    (or stop it and free its placement group)."""
    _stop_actor(loop_id, cloudpickle.loads(spec_blob).get("keep_warm", 0.0))
    return True


@qflow.lattice
def variational_loop(
    loop_id: str, spec_blob: bytes, state: dict[str, Any], steps: int, pack: int
) -> dict[str, Any]:
    """The loop as a workflow: one node per chunk of ``pack`` iterations."""
    chunks = []
    n_chunks = math.ceil(steps / pack)
    sizes = [min(pack, steps - i * pack) for i in range(n_chunks)]
    for i, k in enumerate(sizes):
        state = run_chunk(loop_id, spec_blob, state, k, last=i == n_chunks - 1)
        chunks.append(state)
    return {"chunks": chunks, "closed": close_loop(loop_id, spec_blob, state)}


@qflow.lattice
def parallel_loops(
    runs: list[tuple[str, bytes, dict[str, Any]]], steps: int, pack: int
) -> list[dict[str, Any]]:
    """Several loops at once, one :func:`variational_loop` sublattice each (restarts)."""
    loop = qflow.electron(variational_loop)
    return [loop(loop_id, spec_blob, state, steps, pack) for loop_id, spec_blob, state in runs]


def _check_circuit(
    circuit: Callable[..., Any], params: np.ndarray, wires: int, optimizer: Any
) -> None:
    """Fail before spending compute: a QNode where its body belongs, params the circuit
    never reads, wires out of range, or no scalar to differentiate."""
    import pennylane as qml

    if isinstance(circuit, qml.QNode):
        raise QflowInputError(
            f"minimize takes the circuit function (a QNode body: gates, then one "
            f"qml.expval), and builds the QNode itself on the backend's device; got the QNode "
            f"{getattr(circuit, '__name__', circuit)!r}. Pass its function instead: "
            f"circuit=my_qnode.func, or drop the @qml.qnode decorator."
        )
    if not callable(circuit):
        raise QflowInputError(
            f"circuit must be a function of the params array; got "
            f"{type(circuit).__name__} {circuit!r}."
        )
    if params.ndim != 1 or params.size == 0:
        raise QflowInputError(
            f"params must be a non-empty 1-D array of floats; got shape {params.shape}."
        )
    try:
        tape = qml.tape.make_qscript(circuit)(params)
    except Exception as exc:
        raise QflowInputError(
            f"The circuit could not be built with params of shape {np.shape(params)}: "
            f"{exc!r}. Check that it takes the params array as its one argument."
        ) from exc
    used = sorted(w for w in tape.wires if not (isinstance(w, int) and 0 <= w < wires))
    if used:
        raise QflowConfigError(
            f"The circuit uses wires {used}, but wires={wires} gives 0..{wires - 1}. Pass "
            f"wires={max(tape.wires.tolist(), key=lambda w: w if isinstance(w, int) else -1) + 1}"
            " or fix the circuit."
        )
    unused = _unused_params(circuit, params.size)
    if unused:
        raise QflowInputError(
            f"The circuit never reads params {_ranges(unused)} of the {params.size} given, so "
            f"the optimizer would move them for nothing (and report a cost that does not "
            f"depend on them). Pass exactly the params the circuit uses "
            f"({params.size - len(unused)} here), or use them in the circuit."
        )
    gradient_based = hasattr(optimizer, "compute_grad") or (
        isinstance(optimizer, ScipyOptimizer)
        and optimizer.method.upper() in ("BFGS", "L-BFGS-B", "CG", "NEWTON-CG")
    )
    ms = tape.measurements
    if gradient_based and (len(ms) != 1 or not isinstance(ms[0], qml.measurements.ExpectationMP)):
        raise QflowInputError(
            f"{type(optimizer).__name__} needs a differentiable scalar cost, but the circuit "
            f"returns {[type(m).__name__ for m in ms]}. Return one qml.expval(H), or use a "
            "gradient-free optimizer (a callable (cost_fn, params) -> (params, cost))."
        )


def _unused_params(circuit: Callable[..., Any], n: int) -> list[int]:
    """Indices of params no gate depends on; [] when that cannot be told.

    The circuit's tape is built (nothing is simulated) at a random point and the
    Jacobian of its gate parameters with respect to ``params`` is taken with autograd:
    an all-zero column is a param the circuit never reads. Circuits that autograd
    cannot trace are not judged.
    """
    import autograd
    import pennylane as qml
    from pennylane import numpy as pnp

    def gate_params(p: Any) -> Any:
        tape = qml.tape.make_qscript(circuit)(p)
        traced = [
            qml.math.reshape(x, (-1,))
            for x in tape.get_parameters(trainable_only=False)
            if isinstance(x, autograd.numpy.numpy_boxes.ArrayBox)
        ]
        return pnp.concatenate(traced) if traced else pnp.zeros(1) * p[0]

    point = pnp.array(np.random.default_rng(12345).uniform(0.1, 1.0, n), requires_grad=True)
    try:
        jac = np.asarray(autograd.jacobian(gate_params)(point))
    except Exception:  # not traceable (or raises at this point): no verdict
        return []
    if jac.ndim != 2 or jac.shape[1] != n or not np.all(np.isfinite(jac)):
        return []
    return [i for i in range(n) if not np.any(jac[:, i])]


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0..2, 5``."""
    out, start = [], None
    for i, idx in enumerate(indices):
        if start is None:
            start = idx
        if i + 1 == len(indices) or indices[i + 1] != idx + 1:
            out.append(str(start) if start == idx else f"{start}..{idx}")
            start = None
    return ", ".join(out)


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
) -> tuple[str, bytes, dict[str, Any]]:
    """Validate a loop and return ``(loop_id, spec_blob, initial_state)`` for
    :func:`variational_loop`; :func:`minimize` documents the arguments."""
    import pennylane as qml

    from qflow.backends import get_backend

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
    _check_circuit(circuit, params, wires, optimizer)
    if tol is not None and (
        not isinstance(tol, int | float) or isinstance(tol, bool) or not tol >= 0
    ):
        raise QflowConfigError(f"tol must be None or a number >= 0; got {tol!r}.")
    if not isinstance(keep_warm, int | float) or isinstance(keep_warm, bool) or not keep_warm >= 0:
        raise QflowConfigError(f"keep_warm is seconds >= 0; got {keep_warm!r}.")
    spec = {
        "circuit": circuit,
        "wires": wires,
        "backend": backend,
        "tol": tol,
        "diff_method": method,
        "final_repeats": final_repeats,
        "keep_warm": float(keep_warm),
    }
    # What reproduces the run: the actor adds it to the loop's final chunk only.
    spec["inputs"] = {
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
    }
    state = ChunkState(
        params=params,
        optimizer=cloudpickle.dumps(optimizer),
        costs=[],
        last_cost=None,
        converged=False,
        step=0,
        restarts=0,
    )
    return uuid.uuid4().hex[:12], cloudpickle.dumps(spec), state


def collect(chunks: list[dict[str, Any]], dispatch_id: str, seconds: float) -> LoopResult:
    """A :class:`LoopResult` from the chunk outputs of :func:`variational_loop`."""
    ran = [c for c in chunks if c["costs"]]
    last = ran[-1]
    return LoopResult(
        costs=[c for chunk in ran for c in chunk["costs"]],
        final_cost=last.get("final_cost", last["last_cost"]),
        params=np.asarray(last["params"]),
        iterations=last["step"],
        converged=last["converged"],
        seconds=seconds,
        chunk_seconds=[c["seconds"] for c in ran],
        actor_node_ids=[c["node_id"] for c in ran],
        actor_restarts=last["restarts"],
        dispatch_id=dispatch_id,
        final_cost_stderr=last.get("final_cost_stderr"),
        inputs=dict(last.get("inputs") or {}),
    )


def describe_optimizer(optimizer: Any) -> dict[str, Any]:
    """An optimizer's class and its plain settings (step size, method...)."""
    settings = (
        {
            k: v
            for k, v in vars(optimizer).items()
            if not k.startswith("_") and isinstance(v, int | float | str | bool | type(None))
        }
        if hasattr(optimizer, "__dict__")
        else {}
    )
    if isinstance(optimizer, ScipyOptimizer):
        settings = {"method": optimizer.method, **optimizer.options}
    kind = type(optimizer)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", **settings}


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
    loop_id, spec_blob, state = prepare(
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
    )
    spec = cloudpickle.loads(spec_blob)
    current().service()  # connected, so the check below sees the cluster
    ensure_feasible(
        {"CPU": 1.0, **spec["backend"].ray_resources()},
        f"The variational loop's actor for backend {spec['backend']!r}",
    )
    t0 = time.perf_counter()
    dispatch_id = qflow.dispatch(variational_loop)(loop_id, spec_blob, state, steps, pack)
    if callback is not None or wants_bar(progress):
        try:
            follow(dispatch_id, steps, callback=callback, progress=progress)
        except BaseException:  # the dispatch is cancelled; its detached actor must go too
            _stop_actor(loop_id)
            raise
    res = qflow.get_result(dispatch_id, wait=True)
    if res.status != qflow.status.COMPLETED:
        _stop_actor(loop_id)
        raise BackendError(f"The variational loop {dispatch_id} ended {res.status}:\n{res.error}")
    return collect(res.result["chunks"], dispatch_id, time.perf_counter() - t0)


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
) -> list[LoopResult]:
    """:func:`minimize` from each of ``starts`` at once: one dispatch whose loops are
    parallel sublattices, each on its own warm actor (as many run together as the
    cluster has CPUs for). Results come back in the order of ``starts``.

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
        )
        for start in starts
    ]
    chosen = cloudpickle.loads(runs[0][1])["backend"]
    current().service()
    ensure_feasible(
        {"CPU": 1.0, **chosen.ray_resources()},
        f"The variational loop's actor for backend {chosen!r}",
    )
    t0 = time.perf_counter()
    dispatch_id = qflow.dispatch(parallel_loops)(runs, steps, pack)
    res = qflow.get_result(dispatch_id, wait=True)
    if res.status != qflow.status.COMPLETED:
        for loop_id, _, _ in runs:
            _stop_actor(loop_id)
        raise BackendError(f"The variational loops {dispatch_id} ended {res.status}:\n{res.error}")
    seconds = time.perf_counter() - t0
    return [collect(loop["chunks"], dispatch_id, seconds) for loop in res.result]
