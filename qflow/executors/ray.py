"""Electrons as Ray remote tasks, the default executor: one task per call, or, for an
electron with ``pack=N``, up to N ready calls in one task (a pack), each still its own
node with its own outcome."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from qflow.core.completions import watch
from qflow.core.graph import NodeKind
from qflow.core.task import NodeOutcome, TaskCall, run_shipped
from qflow.executors.base import Executor, Submission
from qflow.executors.packs import PackRun


def run_wire(wire: bytes, *dep_values: Any) -> tuple[Any, bytes]:
    """Run the node ``wire`` describes, in whichever Ray worker (task or actor) it
    reached; returns the node's value (a large one as its pickle, shipped once) and its
    outcome's wire form."""
    value, outcome = run_shipped(TaskCall.from_wire(wire), dep_values)
    return value, outcome.to_wire()


_run_node = ray.remote(num_returns=2)(run_wire)


#: Made once: each access to a classmethod makes a new bound method, one more object
#: per node for the garbage collector to track.
outcome_from_wire = NodeOutcome.from_wire


def ray_options(options: Any, sublattice: bool = False) -> dict[str, Any]:
    """The one translation of an electron's resource options into Ray's task options
    (``num_cpus``, ``num_gpus``, ``resources``); what is unset is left to Ray's defaults
    (one CPU), except that a sublattice, which only waits on its own electrons, holds
    none.

    Example:
        >>> from qflow.core.options import ElectronOptions
        >>> ray_options(ElectronOptions(num_gpus=1, resources={"qpu": 1}))
        {'num_gpus': 1, 'resources': {'qpu': 1}}
    """
    out: dict[str, Any] = {}
    if options.num_cpus is not None:
        out["num_cpus"] = options.num_cpus
    elif sublattice:
        out["num_cpus"] = 0
    if options.num_gpus is not None:
        out["num_gpus"] = options.num_gpus
    if options.resources:
        out["resources"] = dict(options.resources)
    return out


class RayExecutor(Executor):
    """Runs each electron as a Ray task; data moves through Ray's object store.

    Example:
        >>> import qflow
        >>> @qflow.electron(executor="ray", num_cpus=1, max_retries=2)
        ... def task(x):
        ...     return x + 1
    """

    #: The owner resolves a task's arguments in the callbacks of the completion that
    #: made them: let those finish before a cancel looks at the task. On a machine
    #: whose CPUs are all busy those callbacks can lag by tens of milliseconds, and a
    #: cancel that comes first aborts the process (see Dispatcher._cancel_submission);
    #: the dispatch is recorded CANCELLED at once either way.
    cancel_delay_s = 0.5

    @classmethod
    def affinity(cls) -> int:
        return 2

    def __init__(self) -> None:
        self._remote_by_options: dict[Any, Any] = {}
        self._remote_by_id: dict[int, tuple[Any, Any, Any]] = {}

    def _remote(self, call: TaskCall) -> Any:
        # Options objects are shared by the nodes of a lattice: decide once per object.
        cached = self._remote_by_id.get(id(call.options))
        if cached is not None and cached[0] is call.options and cached[1] is call.kind:
            return cached[2]
        remote = self._make_remote(call)
        self._remote_by_id[id(call.options)] = (call.options, call.kind, remote)
        if len(self._remote_by_id) > 4096:  # a long-lived service sees many lattices
            self._remote_by_id.clear()
        return remote

    def _ray_options(self, call: TaskCall) -> dict[str, Any]:
        opts = call.options
        ray_opts = ray_options(opts, call.kind is NodeKind.SUBLATTICE)
        if opts.max_retries is not None:
            ray_opts["max_retries"] = opts.max_retries
        if opts.retry_exceptions is not None:
            retry = opts.retry_exceptions
            ray_opts["retry_exceptions"] = list(retry) if isinstance(retry, tuple) else retry
        env = opts.full_runtime_env()
        if env:
            ray_opts["runtime_env"] = env
        return ray_opts

    def _make_remote(self, call: TaskCall) -> Any:
        ray_opts = self._ray_options(call)
        if not ray_opts:
            return _run_node
        key = repr(sorted(ray_opts.items()))
        remote = self._remote_by_options.get(key)
        if remote is None:
            remote = self._remote_by_options[key] = _run_node.options(**ray_opts)
        return remote

    def submit(self, call: TaskCall, deps: Sequence[Any]) -> Submission:
        value_ref, outcome_ref = self._remote(call).remote(call.to_wire(), *deps)
        return Submission(
            done=watch(outcome_ref, outcome_from_wire), value_ref=value_ref, handle=value_ref
        )

    def submit_many(
        self, calls: Sequence[TaskCall], deps: Sequence[Sequence[Any]]
    ) -> list[Submission]:
        """One Ray task for all of ``calls`` (calls of one electron), a
        :class:`~qflow.executors.packs.PackRun`: each call's outcome comes as the pack
        reports it. An input may be :class:`~qflow.executors.base.InPack`: an earlier
        call's value, passed inside the task (a chain)."""
        if len(calls) == 1:
            return [self.submit(calls[0], deps[0])]
        run = PackRun(calls, deps, self._ray_options(calls[0]))
        # value_ref None: a member's value is handed on when its outcome arrives.
        return [Submission(done=m, value_ref=None, handle=run, packed=True) for m in run.members]

    def cancel(self, submission: Submission) -> None:
        # force: a polite cancel only lands between bytecodes, so an electron blocked in
        # a sleep, a C extension or I/O would run to its end. Killing the worker is what
        # "cancel" has to mean for a stuck electron. A deferred cancel may come due as
        # the process exits: Ray ends the process when called after its shutdown.
        if not ray.is_initialized():
            return
        if isinstance(submission.handle, PackRun):
            submission.handle.cancel()
        else:
            ray.cancel(submission.handle, force=True, recursive=True)
