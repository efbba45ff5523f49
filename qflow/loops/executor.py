"""A variational loop's chunks as method calls on the loop's warm actor.

A chunk run as a plain Ray task costs a worker lease, a worker process and a second
hop from that worker to the actor, more than an iteration of a small VQE
(``benchmarks/latency.py`` measures it). The loop executor calls the actor directly
instead. The
node still runs in a Ray worker (the actor's), its value still lives in Ray's object
store, and the store records it like any other node.

How a loop's chunks run:

- The first chunk, before any actor serves the loop, is a plain Ray task; it starts
  (or takes from the pool) the loop's actor. The next chunk is submitted once it is
  done.
- Every later chunk is an actor call, submitted at once. The actor keeps each chunk's
  output for the next chunk sent to it, which names that output (:class:`Held`)
  instead of taking it as a Ray argument: the calls wait in the actor's queue and run
  back to back, with no round trip through the driver between them (with the output
  as a Ray argument, each call would leave the driver only once the previous one's
  result had reached it, and the actor would idle meanwhile). Each output still returns to the driver as the node's value. The last chunk is
  submitted the same way, but what follows it (the loop's close) waits for it.
- When the actor dies, its queued chunks fail with it. The chunk whose input had been
  computed reruns as a plain task, which starts a fresh actor and counts a restart;
  each later chunk reruns once its predecessor has, from that rerun's output.
- Cancelling a chunk on the actor stops the actor (Ray cannot stop a running actor
  call) as soon as the chunk before it is done, so a cancelled loop stops at once:
  the chunks after it end unrun. The actor is not reused.

Not meant for users' electrons: :func:`qflow.loops.workflow.run_chunk` runs on it, and
takes the loop's :class:`~qflow.loops.spec.LoopSpec` as its first argument and
``last=`` as a keyword.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import ray

from qflow.core.completions import Completion, watch
from qflow.core.task import NodeOutcome, TaskCall
from qflow.executors.base import Submission
from qflow.executors.ray import RayExecutor, outcome_from_wire
from qflow.loops import pool as loop_pool
from qflow.loops import warm as warm


class NotServingError(RuntimeError):
    """Raised on a loop actor asked to run a chunk of a loop it does not serve, or whose
    input it does not hold; the chunk then reruns as a plain task."""


@dataclasses.dataclass(frozen=True)
class Held:
    """An argument the loop's actor holds: the output (or error) of the chunk
    ``(dispatch_id, node_id)`` it ran just before."""

    dispatch_id: str
    node_id: int


@dataclasses.dataclass
class _Attempt:
    """Where a chunk runs now (for cancel), and whether it had to be rerun."""

    loop_id: str | None
    ref: Any = None
    on_actor: bool = False
    rerun: bool = False
    held_by: Any = None  # the actor that keeps this chunk's output for the next one
    held_as: Held | None = None  # and what the next one calls it


class LoopExecutor(RayExecutor):
    """Runs a loop's chunk on the actor serving the loop, else as a plain Ray task.

    Example:
        >>> from qflow.executors import LoopExecutor
        >>> LoopExecutor.name(), LoopExecutor.affinity()
        ('loop', 0)
    """

    listed = False
    cancel_delay_s = 0.0  # its cancel stops the actor, which never upsets Ray's bookkeeping

    @classmethod
    def affinity(cls) -> int:
        return 0  # qflow's own loops ask for it by name

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._actors: dict[str, Any] = {}  # loop id -> the handle of its actor
        # The value ref handed to the dispatcher for each chunk submitted ahead of its
        # predecessor's end -> its submission: a rerun successor finds its input here.
        self._ahead: dict[Any, Submission] = {}
        self._stopped: set[str] = set()  # loops whose actor a cancel stopped

    def submit(self, call: TaskCall, deps: Sequence[Any]) -> Submission:
        loop_id = _loop_id(call)
        sub = Submission(done=Future(), handle=_Attempt(loop_id))
        self._attempt(call, list(deps), sub, try_actor=True, keep=not _is_last(call))
        if sub.handle.on_actor and not _is_last(call):
            sub.value_ref = sub.handle.ref  # the next chunk is sent now, to follow it
            with self._lock:
                self._ahead[sub.value_ref] = sub
        return sub

    def cancel(self, submission: Submission) -> None:
        attempt: _Attempt = submission.handle
        if not ray.is_initialized() or attempt.ref is None:
            return
        if attempt.on_actor:
            # Ray does not stop a running actor call: stop the actor, as a forced cancel
            # stops a task's worker. The chunks queued behind it end with it, unrun.
            with self._lock:
                self._stopped.add(attempt.loop_id or "")
            self._forget(attempt.loop_id)
            loop_pool.call_pool("discard", attempt.loop_id)
        else:
            super().cancel(Submission(done=submission.done, handle=attempt.ref))

    # ------------------------------------------------------------------ attempts
    def _attempt(
        self,
        call: TaskCall,
        deps: list[Any],
        sub: Submission,
        try_actor: bool,
        restarted: bool = False,
        keep: bool = False,
    ) -> None:
        attempt: _Attempt = sub.handle
        attempt.held_by = attempt.held_as = None  # a rerun's output is not kept
        actor = self._actor_for(attempt.loop_id) if try_actor else None
        if actor is not None:
            args = [self._held_on(actor, dep) for dep in deps]
            held = Held(call.dispatch_id, call.node_id) if keep else None
            value_ref, outcome_ref = actor.run_node.remote(call.to_wire(), *args, keep=held)
            if keep:
                attempt.held_by, attempt.held_as = actor, held
        else:
            if restarted:
                call = dataclasses.replace(call, kwargs={**call.kwargs, "restarted": ("c", True)})
            value_ref, outcome_ref = self._remote(call).remote(call.to_wire(), *deps)
        attempt.ref, attempt.on_actor = value_ref, actor is not None
        watch(outcome_ref, outcome_from_wire).add_done_callback(
            lambda fut: self._settle(fut, call, deps, sub, value_ref, actor is not None)
        )

    def _settle(
        self,
        fut: Completion,
        call: TaskCall,
        deps: list[Any],
        sub: Submission,
        value_ref: Any,
        on_actor: bool,
    ) -> None:
        exc = fut.exception()
        loop_id = sub.handle.loop_id
        if exc is None:
            outcome: NodeOutcome = fut.result()
            outcome.value_ref = value_ref
            if not on_actor:  # it may have started the loop's actor: look it up again
                self._forget(loop_id)
            self._release_inputs(deps)
            sub.done.set_result(outcome)
            return
        lost = on_actor and (
            isinstance(exc, ray.exceptions.RayActorError)
            or isinstance(getattr(exc, "cause", None), NotServingError)
        )
        if not lost or sub.cancelled or loop_id in self._stopped:
            if lost:  # the actor was stopped by a cancel: that is the news
                exc = ray.exceptions.TaskCancelledError()
            self._release_inputs(deps)
            sub.done.set_exception(exc)
            return
        self._forget(loop_id)
        sub.handle.rerun = True
        parents = self._parents(deps)
        died = isinstance(exc, ray.exceptions.RayActorError)
        _when_done(
            [p.done for p in parents],
            lambda: self._rerun(call, deps, sub, parents, died),
            lambda err: self._fail(deps, sub, err),
        )

    def _rerun(
        self,
        call: TaskCall,
        deps: list[Any],
        sub: Submission,
        parents: list[Submission],
        died: bool,
    ) -> None:
        """Run a chunk its actor lost again, now that its predecessor is done."""
        if sub.cancelled or sub.handle.loop_id in self._stopped:
            sub.done.set_exception(ray.exceptions.TaskCancelledError())
            return
        with self._lock:
            inputs = [
                self._ahead[d].done.result().value_ref if d in self._ahead else d for d in deps
            ]
        # The first chunk to rerun is the one the actor died under (its input had been
        # computed): it starts a fresh actor and counts the restart. Later ones follow
        # their predecessor's rerun onto that actor. A chunk sent to an actor serving
        # another loop runs as a plain task, which gives the loop an actor.
        first = not any(p.handle.rerun for p in parents)
        try:
            self._attempt(call, inputs, sub, try_actor=died and not first, restarted=died and first)
        except Exception as err:  # e.g. Ray shut down meanwhile
            sub.done.set_exception(err)

    def _held_on(self, actor: Any, dep: Any) -> Any:
        """``dep``, or a :class:`Held` naming it when ``actor`` keeps it: the output of a
        chunk sent just before to the same actor."""
        with self._lock:
            parent = self._ahead.get(dep)
        if parent is None or parent.handle.held_by is not actor:
            return dep
        return parent.handle.held_as

    def _parents(self, deps: list[Any]) -> list[Submission]:
        with self._lock:
            return [self._ahead[d] for d in deps if d in self._ahead]

    def _release_inputs(self, deps: list[Any]) -> None:
        """The chunk is over: its predecessor's entry is no longer needed."""
        with self._lock:
            for d in deps:
                self._ahead.pop(d, None)

    # ------------------------------------------------------------------ actors
    def _actor_for(self, loop_id: str | None) -> Any:
        """The handle of the actor serving ``loop_id``, or None if none does yet."""
        if loop_id is None:
            return None
        with self._lock:
            actor = self._actors.get(loop_id)
        if actor is not None:
            return actor
        try:
            name = loop_pool.call_pool("holder", loop_id)
            actor = None if name is None else ray.get_actor(name, namespace=warm.NAMESPACE)
        except Exception:  # no pool, or the actor is gone: a plain task will start one
            return None
        if actor is not None:
            with self._lock:
                self._actors[loop_id] = actor
        return actor

    def _forget(self, loop_id: str | None) -> None:
        with self._lock:
            self._actors.pop(loop_id or "", None)

    def _fail(self, deps: list[Any], sub: Submission, err: BaseException) -> None:
        self._release_inputs(deps)
        sub.done.set_exception(err)


def _when_done(
    futures: list[Future | Completion],
    then: Callable[[], None],
    failed: Callable[[BaseException], Any],
) -> None:
    """``then()`` once every future has a result, or ``failed(exc)`` on the first that
    raised."""
    pending = next((f for f in futures if not f.done()), None)
    if pending is not None:
        pending.add_done_callback(lambda _: _when_done(futures, then, failed))
        return
    err = next((f.exception() for f in futures if f.exception() is not None), None)
    if err is not None:
        failed(err)
    else:
        then()


def _loop_id(call: TaskCall) -> str | None:
    """The loop id of the spec a chunk takes as its first argument, if given as a
    literal."""
    first = call.args[0] if call.args else None
    if first is not None and first[0] == "c":
        return getattr(first[1], "loop_id", None)
    return None


def _is_last(call: TaskCall) -> bool:
    """Whether the chunk ends its loop (``last=True``); unknown counts as last, which
    only means what follows it waits for it."""
    last = call.kwargs.get("last")
    return last is None or last[0] != "c" or last[1] is not False
