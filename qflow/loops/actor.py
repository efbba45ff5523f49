"""The loop's actor, which holds the warm device and QNode and runs chunks of optimizer
steps, and the shot-noise stopping test it applies."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from typing import Any, ClassVar

import cloudpickle
import numpy as np
import ray

from qflow.core.task import CallParts, TaskCall, run_shipped
from qflow.loops.executor import Arg, ChunkCall, ChunkFailed, Held, NotServingError
from qflow.loops.optimizers import ScipyOptimizer
from qflow.loops.spec import ChunkState, LoopSpec
from qflow.secrets.grant import SecretLease, SecretsGrant, current_grant

__all__ = ["STAT_WINDOW", "LoopActor", "stalled"]


class LoopActor:
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
    in_this_process: ClassVar[LoopActor | None] = None

    def __init__(self) -> None:
        # Imported now, while the actor waits in the pool, not when a loop needs it.
        import pennylane  # noqa: F401

        LoopActor.in_this_process = self
        self.loop_id: str | None = None
        self._held: dict[Held, Any] = {}  # chunk outputs kept for the next chunk
        self._node_id = ray.get_runtime_context().get_node_id()

    def load(self, spec: LoopSpec, grant: SecretsGrant | None = None) -> None:
        """Serve ``spec``'s loop: build its device and QNode (once per loop), with the
        secrets of ``grant`` (the chunk's, which asked for the backend's)."""
        if spec.loop_id == self.loop_id:
            return
        self._held.clear()
        self.backend = spec.backend
        with SecretLease(grant):
            self.device = self.backend.make_device(spec.wires)
        self.qnode = self.backend.qnode(spec.circuit, self.device, spec.diff_method)
        self.tol = spec.tol
        self.final_repeats = spec.final_repeats
        self.inputs = dict(spec.inputs)
        self.loop_id = spec.loop_id

    def node_id(self) -> str:
        return self._node_id

    def run_node(
        self, parts: CallParts, *dep_values: Any, keep: Held | None = None
    ) -> tuple[Any, bytes]:
        """Run a chunk's node here, sent by the loop executor as its call's
        :meth:`~qflow.core.task.TaskCall.parts`; ``keep`` names its output (or error)
        for the next chunk, which takes it as a :class:`Held` argument. Returns its
        value and its outcome's wire form."""
        try:
            inputs = [self._take(v) if isinstance(v, Held) else v for v in dep_values]
            value, done = run_shipped(TaskCall.from_parts(*parts), inputs)
            outcome = done.to_wire()
        except BaseException as exc:
            if keep is not None:  # the next chunk fails with it, as with a Ray argument
                self._held[keep] = exc
            raise
        if keep is not None:
            self._held[keep] = value
        return value, outcome

    def run_nodes(self, calls: list[ChunkCall], *values: Any) -> tuple[Any, ...]:
        """Run chunks the loop executor sent together, in order, as :meth:`run_node`
        runs each (``calls``: parts, inputs and keep; an input that is
        an :class:`~qflow.loops.executor.Arg` is one of ``values``): each chunk's value,
        then one list of their outcomes. A chunk that fails has no value, and for its
        outcome the error Ray would have raised for it alone.

        The outcomes travel as one return: Ray sends a call's returns together when it
        ends, so one per chunk would tell the driver nothing sooner, and each costs Ray
        tens of microseconds, a small VQE's iteration costing about a thousand."""
        out: list[Any] = []
        outcomes: list[bytes | ChunkFailed] = []
        for parts, args, keep in calls:
            inputs = [values[a.index] if isinstance(a, Arg) else a for a in args]
            try:
                value, outcome = self.run_node(parts, *inputs, keep=keep)
            except Exception as exc:
                error = ray.exceptions.RayTaskError("run_chunk", traceback.format_exc(), exc)
                out.append(None)
                outcomes.append(ChunkFailed(error))
            else:
                out.append(value)
                outcomes.append(outcome)
        return (*out, outcomes)

    def _take(self, held: Held) -> Any:
        if held not in self._held:  # a new actor, or one that served another loop since
            raise NotServingError(f"This actor does not hold the output of {held}.")
        value = self._held.pop(held)
        if isinstance(value, BaseException):
            # Raised afresh, not onto the frames of every earlier re-raise: each chunk
            # queued after a failure raises this one error, and a traceback that grew
            # by a few frames per chunk made formatting them quadratic (a 2,000-step
            # loop failing early took over two minutes to end). The chunk that failed
            # recorded its own traceback already.
            raise value.with_traceback(None)
        return value

    def run(
        self,
        loop_id: str,
        state: dict[str, Any],
        k: int,
        last: bool,
        grant: SecretsGrant | None = None,
    ) -> ChunkState:
        """Run ``k`` steps from ``state``; ``last`` adds the final estimate and inputs.
        ``grant``: the secrets the chunk was granted, fetched again here for its
        circuits (a chunk the loop executor sends here runs inside its own grant)."""
        if loop_id != self.loop_id:  # never compute for the wrong loop
            raise NotServingError(f"This actor serves loop {self.loop_id}, not {loop_id}.")
        if grant is not None and current_grant() is None:
            with SecretLease(grant):
                return self._run(state, k, last)
        return self._run(state, k, last)

    def _run(self, state: dict[str, Any], k: int, last: bool) -> ChunkState:
        from pennylane import numpy as pnp

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
