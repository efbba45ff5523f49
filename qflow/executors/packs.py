"""Packs: several calls of one electron run one after another in one Ray task, each
still its own node with its own outcome.

A pack is a streaming Ray task (``num_returns="streaming"``). It reports its calls as
they finish, so what a pack had finished when its worker died is kept: only its
unfinished calls run again, in a new pack. A report is a streamed object, which costs
the worker about 0.1 ms, so calls shorter than :data:`REPORT_EVERY_S` are reported
together, at most that far apart; a longer call is reported as soon as it ends.

A finished call's value comes back inside its report, and dependants take it inline in
their task's arguments, up to :data:`INLINE_VALUE`; a larger value is streamed as an
object of its own, which dependants take by reference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import ray
from ray.exceptions import (
    LocalRayletDiedError,
    NodeDiedError,
    OutOfMemoryError,
    WorkerCrashedError,
)

from qflow.core.completions import Completion, watch_stream
from qflow.core.task import OUTCOME_ATTR, NodeOutcome, PickledValue, TaskCall, run_shipped
from qflow.exceptions import PackedCallError, PackSkipped
from qflow.executors.base import InPack

#: Values whose pickle is at most this size travel inside their call's report and go
#: to dependants inline; larger ones are objects of their own.
INLINE_VALUE = 64 * 1024
#: Finished calls are reported together at most this far apart (see the module doc).
REPORT_EVERY_S = 0.0025
#: Failures of the pack's worker or node that rerun its unfinished calls, as Ray reruns
#: a task: its ``max_retries`` times (3 unless the electron sets it).
_LOST_WORKER = (WorkerCrashedError, NodeDiedError, LocalRayletDiedError, OutOfMemoryError)
_RAY_DEFAULT_RETRIES = 3

#: One finished call in a report: its index in the pack, then True and its outcome's
#: wire form, False and the outcome (or the error's repr) of a failure, or None and ""
#: for a call not run because the pack's call it takes its input from failed.
Done = tuple[int, bool | None, bytes | str]


def _retries(call: TaskCall, exc: BaseException) -> bool:
    """Whether a packed call's exception is one its options retry (as Ray would)."""
    retry = call.options.retry_exceptions
    if not retry:
        return False
    return retry is True or isinstance(exc, tuple(retry))


def _run_one(call: TaskCall, deps: list[Any]) -> tuple[Any, bool, bytes | str]:
    attempts = 1 + max(call.options.max_retries or 0, 0)
    for attempt in range(attempts):
        try:
            value, outcome = run_shipped(call, deps, INLINE_VALUE)
        except Exception as exc:
            if attempt + 1 < attempts and _retries(call, exc):
                continue
            got = getattr(exc, OUTCOME_ATTR, None)
            return None, False, got.to_wire() if got is not None else repr(exc)
        return value, True, outcome.to_wire()
    raise AssertionError("unreachable: the last attempt returns")


def run_pack(wires: list[bytes], sources: list[list[int]], *dep_values: Any) -> Any:
    """Run a pack's calls one after another in this worker, streaming reports: each a
    ``(list of Done, big)``; when ``big`` is a call's index, the next streamed object is
    that call's value (a :class:`PickledValue`).

    Each call's inputs are ``sources``: ``i >= 0`` is ``dep_values[i]``, ``-(j + 1)``
    the value of the pack's call ``j`` (a fused chain). A call that fails fails alone
    (retried first, as its options say); one whose input failed in the pack is not run;
    the others run on."""
    values: list[Any] = []
    failed: set[int] = set()
    report: list[Done] = []
    last = time.perf_counter()
    for k, (wire, taken) in enumerate(zip(wires, sources)):
        if any(s < 0 and -s - 1 in failed for s in taken):
            failed.add(k)
            values.append(None)
            report.append((k, None, ""))
            continue
        call = TaskCall.from_wire(wire)
        value, ok, payload = _run_one(
            call, [values[-s - 1] if s < 0 else dep_values[s] for s in taken]
        )
        values.append(value)
        report.append((k, ok, payload))
        if not ok:
            failed.add(k)
        if isinstance(value, PickledValue):  # too big to report inline
            yield report, k
            yield value
            report, last = [], time.perf_counter()
        elif time.perf_counter() - last >= REPORT_EVERY_S:
            yield report, None
            report, last = [], time.perf_counter()
    if report:
        yield report, None


_run_pack = ray.remote(run_pack)


class PackRun:
    """The calling side of one pack: a :class:`Completion` per call, set as the pack's
    reports come in; a new pack for the unfinished calls when the worker is lost."""

    def __init__(
        self, calls: Sequence[TaskCall], deps: Sequence[Sequence[Any]], options: dict[str, Any]
    ) -> None:
        self.members = [Completion() for _ in calls]
        self._calls, self._deps = list(calls), [list(d) for d in deps]
        self._options = {**options, "num_returns": "streaming", "max_retries": 0}
        self._options.pop("retry_exceptions", None)  # each call's retries run in the pack
        retries = calls[0].options.max_retries
        self._retries_left = _RAY_DEFAULT_RETRIES if retries is None else retries
        self._values: dict[int, Any] = {}  # a finished call's value, for a rerun's inputs
        self._lock = threading.Lock()
        self._cancelled = False
        self._gen: Any = None
        self._attempt = 0  # which pack of these calls is current: older ones are let go
        self._order: list[int] = []
        self._big: tuple[int, NodeOutcome] | None = None
        self._start(list(range(len(calls))))

    def cancel(self) -> None:
        """Stop the pack (its worker is killed) and run none of it again."""
        with self._lock:
            self._cancelled = True
            gen = self._gen
        ray.cancel(gen, force=True, recursive=True)

    def _start(self, order: list[int]) -> None:
        """Stream a pack of the calls ``order`` (indices into the first pack)."""
        position = {k: i for i, k in enumerate(order)}
        flat: list[Any] = []
        sources: list[list[int]] = []
        for k in order:
            taken = []
            for dep in self._deps[k]:
                if isinstance(dep, InPack) and dep.index in position:
                    taken.append(-position[dep.index] - 1)
                    continue
                if isinstance(dep, InPack):  # finished in an earlier pack
                    dep = self._values[dep.index]
                taken.append(len(flat))
                flat.append(dep)
            sources.append(taken)
        with self._lock:
            if self._cancelled:
                self._fail(order, ray.exceptions.TaskCancelledError())
                return
            self._order, self._big = order, None
            self._attempt += 1
            attempt = self._attempt
            self._gen = _run_pack.options(**self._options).remote(
                [self._calls[k].to_wire() for k in order], sources, *flat
            )
            gen = self._gen
        watch_stream(gen, lambda ref, exc: self._on_item(attempt, ref, exc))

    def _on_item(self, attempt: int, ref: Any, exc: BaseException | None) -> None:
        if attempt != self._attempt:  # the end of a pack already run again
            return
        if ref is None:  # the end, or Ray went away: nothing more will be reported
            self._fail(self._unfinished(), exc or RuntimeError("The pack ended unreported."))
            return
        if self._big is not None:  # the value the previous report announced
            k, outcome = self._big
            self._big = None
            outcome.value_ref = self._values[k] = ref
            self.members[k].set_result(outcome)
            return
        try:
            report, big = ray.get(ref)
        except Exception as error:  # the pack failed as a whole
            self._lost(error)
            return
        for i, ok, payload in report:
            k = self._order[i]
            if i == big:
                self._big = (k, NodeOutcome.from_wire(cast(bytes, payload)))
            else:
                self._settle(k, ok, payload)

    def _settle(self, k: int, ok: bool | None, payload: bytes | str) -> None:
        member = self.members[k]
        if ok is None:
            member.set_exception(PackSkipped("Not run: the call it takes its input from failed."))
        elif ok:
            outcome = NodeOutcome.from_wire(cast(bytes, payload))
            # Small: dependants take it inline, already pickled (as the store does).
            blob = cast(bytes, outcome.output_blob)  # not big: it is in the report
            outcome.value_ref = self._values[k] = PickledValue(blob)
            member.set_result(outcome)
        else:
            got = NodeOutcome.from_wire(payload) if isinstance(payload, bytes) else None
            exc = PackedCallError(got.error if got is not None and got.error else str(payload))
            setattr(exc, OUTCOME_ATTR, got)
            member.set_exception(exc)

    def _unfinished(self) -> list[int]:
        return [k for k in self._order if not self.members[k].done()]

    def _lost(self, error: BaseException) -> None:
        """The pack's task failed: rerun its unfinished calls if its worker or node was
        lost and retries are left, else fail them with ``error``."""
        left = self._unfinished()
        if left and isinstance(error, _LOST_WORKER) and self._retries_left != 0:
            self._retries_left -= 1
            self._start(left)
        else:
            self._fail(left, error)

    def _fail(self, order: list[int], error: BaseException) -> None:
        for k in order:
            if not self.members[k].done():
                self.members[k].set_exception(error)
