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
- Short chunks go together: while two calls are in flight on the actor, later chunks
  wait, and go in one call (:meth:`~qflow.loops.actor.LoopActor.run_nodes`) as many
  as run in about :data:`GROUP_S`, each still its own node with its own outcome. Each
  chunk travels as its call's parts, so the call carries the template and the loop's
  spec once; its returns are a value per chunk and one list of their outcomes.
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
import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

import ray

from qflow.core.completions import Completion, watch
from qflow.core.task import CallParts, NodeOutcome, TaskCall
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
    rerun: bool = False
    send: _Send | None = None  # what is sent to the loop's actor, if it runs there

    @property
    def on_actor(self) -> bool:
        return self.send is not None

    @property
    def actor(self) -> Any:
        """The actor it is sent to (or waits to be)."""
        return None if self.send is None else self.send.actor

    @property
    def held_as(self) -> Held | None:
        """What the next chunk calls its output, kept on that actor."""
        return None if self.send is None else self.send.held


#: Calls a loop's actor may have in flight before later chunks wait to go together in
#: one call. An actor call costs Ray about 0.3 ms, a quarter of a small VQE's
#: iteration; chunks sent together pay it once. Two in flight keep the actor busy
#: while the driver hears of one and sends the next.
IN_FLIGHT = 2
#: Chunks go together only when short: as many as run in about GROUP_S (their
#: outcomes come back together, so a group is also how late a chunk's news may be),
#: never more than GROUP_MAX.
GROUP_S = 0.02
GROUP_MAX = 32


#: A chunk among chunks sent together: its call's parts, its inputs (each an
#: :class:`Arg` or a :class:`Held`) and the name its output is kept under, if any.
ChunkCall = tuple[CallParts, tuple[Any, ...], "Held | None"]


@dataclasses.dataclass(frozen=True)
class Arg:
    """A chunk's input among chunks sent together: the call's argument ``index``."""

    index: int


@dataclasses.dataclass(frozen=True)
class ChunkFailed:
    """A failed chunk's outcome among chunks sent together
    (:meth:`~qflow.loops.actor.LoopActor.run_nodes`): the error Ray would have raised."""

    error: Any


def _chunk_outcome(payload: Any) -> NodeOutcome:
    if isinstance(payload, ChunkFailed):
        error = payload.error
        raise (
            error.as_instanceof_cause() if isinstance(error, ray.exceptions.RayTaskError) else error
        )
    return outcome_from_wire(payload)


@dataclasses.dataclass
class _Send:
    """A chunk to send to its loop's actor."""

    actor: Any
    call: TaskCall
    deps: list[Any]
    args: list[Any]
    held: Held | None
    sub: Submission


@dataclasses.dataclass
class _Outbox:
    """One actor's calls in flight, and the chunks waiting to go to it."""

    actor: Any
    in_flight: int = 0
    waiting: list[_Send] = dataclasses.field(default_factory=list)
    chunk_s: float | None = None  # how long its last chunk computed

    def group(self) -> int:
        """How many waiting chunks go in one call (one until a chunk is timed)."""
        if self.chunk_s is None:
            return 1
        return max(1, min(GROUP_MAX, int(GROUP_S / max(self.chunk_s, 1e-4))))


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
        self._outboxes: dict[int, _Outbox] = {}  # by id of the actor's handle

    def submit(self, call: TaskCall, deps: Sequence[Any]) -> Submission:
        loop_id = _loop_id(call)
        sub = Submission(done=Future(), handle=_Attempt(loop_id))
        self._attempt(call, list(deps), sub, try_actor=True, keep=not _is_last(call))
        if sub.handle.on_actor and not _is_last(call):
            # The next chunk is sent now, to follow it. It names this one's output as
            # the actor will (this chunk may not be sent yet); the dispatcher takes the
            # value's ref from the outcome.
            sub.value_ref = sub.handle.held_as
            with self._lock:
                self._ahead[sub.value_ref] = sub
        return sub

    def cancel(self, submission: Submission) -> None:
        """Stop a chunk (the dispatcher calls this once the chunk before it is done).
        One on the actor, or waiting to go to it, stops its loop there: it and the
        chunks waiting after it end unrun, and the actor, which may be computing it
        (Ray cannot stop a running actor call), is stopped and not reused."""
        attempt: _Attempt = submission.handle
        if not ray.is_initialized():
            return
        if attempt.send is None:  # a plain task
            if attempt.ref is not None:
                super().cancel(Submission(done=submission.done, handle=attempt.ref))
            return
        call = attempt.send.call
        with self._lock:
            self._stopped.add(attempt.loop_id or "")
            box = self._outboxes.get(id(attempt.actor))
            dropped: list[_Send] = []
            if box is not None and box.actor is attempt.actor:
                dropped = [
                    s
                    for s in box.waiting
                    if s.call.dispatch_id == call.dispatch_id and s.call.node_id >= call.node_id
                ]
                box.waiting = [s for s in box.waiting if s not in dropped]
        for s in dropped:  # never sent
            self._fail(s.deps, s.sub, ray.exceptions.TaskCancelledError())
        self._discard(attempt.loop_id)

    def _discard(self, loop_id: str | None) -> None:
        """Stop the loop's actor for good (a cancel): what it still runs ends unrun."""
        self._forget(loop_id)
        loop_pool.call_pool("discard", loop_id)

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
        attempt.send = None  # a rerun's output is not kept
        actor = self._actor_for(attempt.loop_id) if try_actor else None
        if actor is not None:
            args = [self._held_on(actor, dep) for dep in deps]
            held = Held(call.dispatch_id, call.node_id) if keep else None
            attempt.ref = None
            attempt.send = _Send(actor, call, deps, args, held, sub)
            self._post(attempt.send)
            return
        if restarted:
            call = dataclasses.replace(call, kwargs={**call.kwargs, "restarted": ("c", True)})
        value_ref, outcome_ref = self._remote(call).remote(call.to_wire(), *deps)
        attempt.ref = value_ref
        watch(outcome_ref, outcome_from_wire).add_done_callback(
            lambda fut: self._settle(fut, call, deps, sub, value_ref, False)
        )

    # ------------------------------------------------------------------ chunk groups
    def _post(self, send: _Send) -> None:
        """Send a chunk to its actor now if it has fewer than :data:`IN_FLIGHT` calls of
        ours, else with the chunks waiting for it (in one call, once one of its calls
        is back or :data:`GROUP_MAX` wait)."""
        actor = send.actor
        with self._lock:
            box = self._outboxes.get(id(actor))
            if box is None or box.actor is not actor:
                box = self._outboxes[id(actor)] = _Outbox(actor)
            box.waiting.append(send)
            if box.in_flight >= IN_FLIGHT and (
                box.chunk_s is None or len(box.waiting) < box.group()
            ):
                return  # until a chunk is timed, what waits is held for its timing
            batch, box.waiting = box.waiting, []
            box.in_flight += 1
        self._send(box, batch)

    def _send(self, box: _Outbox, batch: list[_Send]) -> None:
        """One actor call for ``batch``: a value per chunk, then their outcomes in one."""
        # Each chunk as its call's parts: pickled together, the chunks share their
        # template and the loop's spec instead of each carrying a copy (a group of a
        # small VQE's chunks would pass Ray's 100 KiB inline limit and go through the
        # object store).
        calls: list[ChunkCall] = []
        values: list[Any] = []  # inputs Ray resolves: they go as arguments of the call
        for s in batch:
            args: list[Arg | Held] = []
            for arg in s.args:
                if not isinstance(arg, Held):
                    args.append(Arg(len(values)))
                    values.append(arg)
                else:
                    args.append(arg)
            calls.append((s.call.parts(), tuple(args), s.held))
        try:
            refs = box.actor.run_nodes.options(num_returns=len(batch) + 1).remote(calls, *values)
        except Exception as err:  # e.g. Ray shut down meanwhile
            self._back(box)
            for s in batch:
                self._fail(s.deps, s.sub, err)
            return
        for s, ref in zip(batch, refs):
            s.sub.handle.ref = ref
        watch(refs[-1]).add_done_callback(functools.partial(self._group_back, box, batch, refs))

    def _group_back(
        self, box: _Outbox, batch: list[_Send], refs: list[Any], fut: Completion
    ) -> None:
        """A call's outcomes are back (or its error, the same for every chunk in it):
        time the call's last chunk (how many later chunks go together), settle each
        chunk in order, then send what waits for the actor."""
        error = fut.exception()
        settled: list[Completion] = []
        for k in range(len(batch)):
            done = Completion()
            if error is not None:
                done.set_exception(error)
            else:
                try:
                    done.set_result(_chunk_outcome(fut.result()[k]))
                except BaseException as exc:
                    done.set_exception(exc)
            settled.append(done)
        timed = [d.result() for d in settled if d.exception() is None]
        if timed and timed[-1].start_time and timed[-1].end_time:
            box.chunk_s = (
                datetime.fromisoformat(timed[-1].end_time)
                - datetime.fromisoformat(timed[-1].start_time)
            ).total_seconds()
        try:
            for s, ref, done in zip(batch, refs, settled):
                self._settle(done, s.call, s.deps, s.sub, ref, True)
        finally:
            self._back(box)

    def _back(self, box: _Outbox) -> None:
        """One of ``box``'s calls is back: send what waits for its actor."""
        with self._lock:
            box.in_flight -= 1
            if not box.waiting:
                if box.in_flight == 0 and self._outboxes.get(id(box.actor)) is box:
                    del self._outboxes[id(box.actor)]
                return
            size = box.group()
            batch, box.waiting = box.waiting[:size], box.waiting[size:]
            box.in_flight += 1
        self._send(box, batch)

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
        if parent is None or parent.handle.held_as is None or parent.handle.actor is not actor:
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
