"""Runs one recorded graph on its executors and writes what happens to a store.

Ray does the scheduling: every Ray node is submitted at once with the ObjectRefs
of its parents, so data never round-trips through the dispatcher. Only nodes
behind an executor that yields values outside Ray (``local``, ``slurm``) wait
here until their parents' refs exist. The dispatcher's own job is bookkeeping:
record each node as it finishes, evaluate ``OP`` nodes, and decide the outcome.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import queue
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import cloudpickle
import ray

from qflow.core.graph import (
    POSTPROCESS_NAME,
    Apply,
    Expr,
    Graph,
    NodeKind,
    Ref,
)
from qflow.core.launch import build, record
from qflow.core.packing import PackPolicy
from qflow.core.packing import by_default as packing_by_default
from qflow.core.plan import Plan, plan
from qflow.core.recorder import Recorder
from qflow.core.status import Status
from qflow.core.sublattice import SublatticeCall
from qflow.core.task import (
    OUTCOME_ATTR,
    CallTemplate,
    NodeOutcome,
    SublatticeOutput,
    TaskCall,
    dumps_value,
)
from qflow.core.text import value_text
from qflow.exceptions import DispatchFailedError, PackSkipped, StoreFullError
from qflow.executors import InPack, Submission, ray_request, resolve_executor
from qflow.executors.placement import no_longer_feasible
from qflow.secrets.courier import grant_for
from qflow.secrets.grant import SecretsGrant
from qflow.secrets.keep import SecretKeep
from qflow.settings import max_sublattice_depth
from qflow.store.base import DerivedOutput, ResultStore, loads, now_iso

if TYPE_CHECKING:  # what a caller hands in; the core never imports the runtime
    from qflow.runtime.lease import Heartbeat

_POLL_S = 0.25
#: Seconds between checks that the cluster can still hold what is in flight: a node
#: offering a resource may leave, and Ray keeps what only it could run pending for ever.
_PLACEABLE_EVERY_S = 2.0
#: Seconds node records may wait in memory before they are written. Electrons that end
#: one at a time (a chain) otherwise cost a store transaction each, on the driver's
#: CPU, which Ray's own work on each step of the chain waits for.
_FLUSH_S = 0.05
#: OP nodes that only collect their operands: over large outputs they are recorded as
#: recipes (DerivedOutput) rather than evaluated into a second copy.
_CONTAINER_OPS = frozenset({"list", "tuple", "dict"})


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def fingerprints(graph: Graph) -> dict[int, str]:
    """A hash per node of its function, arguments, options and ancestors' hashes.

    Equal fingerprints across two dispatches mean the node would compute the same
    thing, which is what result reuse in ``redispatch`` relies on.
    """
    out: dict[int, str] = {}
    for node in graph.topo_order():
        h = hashlib.sha256()
        try:
            h.update(
                cloudpickle.dumps(
                    (
                        node.name,
                        str(node.kind),
                        node.fn,
                        node.args,
                        node.kwargs,
                        node.expr,
                        node.after,
                    )
                )
            )
        except Exception:  # unpicklable: never reusable
            h.update(str(time.time_ns()).encode())
        for parent in node.parents():
            h.update(out[parent].encode())
        out[node.node_id] = h.hexdigest()
    return out


def _derived_text(expr: Expr) -> str:
    ids = sorted(set(expr.refs()))
    shown = ", ".join(map(str, ids[:20])) + (", ..." if len(ids) > 20 else "")
    return f"<built from the outputs of nodes {shown}>"


def _unwrap(exc: BaseException) -> tuple[BaseException, NodeOutcome | None]:
    """The user's exception behind a Ray error, and the outcome the task attached."""
    cause = exc
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None) or exc
    return cause, getattr(cause, OUTCOME_ATTR, None)


def env_setup_error(label: str, options: Any, cause: BaseException) -> str:
    """What to tell the user when Ray could not build an electron's environment."""
    pip = options.full_runtime_env().get("pip") if options is not None else None
    packages = pip.get("packages") if isinstance(pip, dict) else pip
    text = str(cause).strip()
    if not packages:
        return f"Ray could not set up the runtime_env of electron {label}:\n{text}"
    return (
        f"The pip packages {packages} of electron {label} could not be installed, so it "
        f"did not run. pip said:\n{text[-4000:]}\nPick versions that publish a wheel "
        "for this Python and platform (`pip index versions NAME` lists them), or drop "
        "the pin; qflow installs wheels only, so a pin is never built from source."
    )


@dataclasses.dataclass(eq=False)
class _Verdicts:
    """Why the in-flight nodes of some options can no longer be placed, by options id."""

    by_options: dict[int, str]


class Dispatcher:
    """Executes ``graph`` as dispatch ``dispatch_id``; :meth:`run` blocks until done.

    The loop is event-driven: each submission's completion is pushed into one queue
    by a callback, and handling it touches only that node, its waiting dependants
    and the OP nodes that read it, so the cost per completion does not grow with
    the graph. A cancel arrives as an event too (or, from another process, through
    a status-only read of the dispatch row at most every 0.25 s).

    Args:
        store: where node and dispatch rows are written.
        dispatch_id: an id already recorded by :func:`qflow.core.launch.record`.
        graph: the graph to run.
        reuse: node id -> pickled output of nodes to take from an earlier dispatch.
        heartbeat: claims the dispatch for this process while it runs.
        resumed: this picks up a dispatch a dead dispatcher left unfinished; the nodes
            in ``reuse`` completed then, and keep their records as they are.
        chain: for a sublattice's dispatch, the labels of the sublattice nodes from the
            top dispatch down to it.
        max_depth: how deep sublattices may nest (default: ``$QFLOW_MAX_SUBLATTICE_DEPTH``).
    """

    def __init__(
        self,
        store: ResultStore,
        dispatch_id: str,
        graph: Graph,
        reuse: dict[int, bytes] | None = None,
        heartbeat: Heartbeat | None = None,
        resumed: bool = False,
        chain: tuple[str, ...] = (),
        max_depth: int | None = None,
    ) -> None:
        self.store, self.dispatch_id, self.graph = store, dispatch_id, graph
        self.chain = chain
        self.max_depth = max_depth if max_depth is not None else max_sublattice_depth()
        self.reuse = reuse or {}
        self.heartbeat = heartbeat
        self.resumed = resumed
        #: What stopped the dispatcher itself, if anything did.
        self.crash: BaseException | None = None
        self.done = threading.Event()
        self.status: Status = Status.NEW_OBJECT
        self.rec = Recorder(store, dispatch_id, [n.node_id for n in graph.nodes])
        for node in graph.nodes:
            if node.kind is NodeKind.PARAMETER:  # recorded with their values at creation
                self.rec.state[node.node_id] = Status.COMPLETED
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._cancel_all = False
        self._cancel_nodes: set[int] = set()
        self._blobs: dict[int, bytes] = {}
        self._values: dict[int, Any] = {}
        #: Nodes whose value is not held here: large outputs (read back from Ray when
        #: needed) and containers of them (stored as a DerivedOutput recipe).
        self._not_held: set[int] = set()
        self._refs: dict[int, Any] = {}
        self._placing: threading.Thread | None = None
        self._grants: dict[tuple[str, ...], SecretsGrant] = {}
        self._packing = PackPolicy(
            lambda: ray.cluster_resources().get("CPU", 1.0), probes=packing_by_default()
        )

    # ---------------------------------------------------------------- control
    def abandon(self, timeout: float = 2.0) -> None:
        """Stop writing to the store and stop the loop: this process is exiting, and
        another record of the dispatch's end (written by the caller) must not be
        overwritten. Waits up to ``timeout`` seconds for the loop to let go of its Ray
        references: one dropped after Ray's shutdown makes Ray end the process."""
        self.rec.abandon()
        self._events.put(None)
        self.done.wait(timeout)

    def cancel(self, task_ids: Iterable[int] | None = None) -> None:
        """Cancel the whole dispatch, or only ``task_ids`` (their dependants never run)."""
        if task_ids is None:
            self._cancel_all = True
        else:
            self._cancel_nodes.update(task_ids)
        self._events.put(None)

    # ---------------------------------------------------------------- run
    def run(self) -> Status:
        """Run to the end and return the final status; never raises for node failures."""
        if self.heartbeat is not None:
            self.heartbeat.claim(self.dispatch_id)
        try:
            self.status = self._run()
        except BaseException as exc:
            self.status = Status.FAILED
            self.crash = exc
            why = (
                str(exc)
                if isinstance(exc, StoreFullError)
                else f"The dispatcher itself failed: {exc!r}"
            )
            with contextlib.suppress(Exception):  # the store may be what failed
                self.store.end_dispatch(self.dispatch_id, Status.FAILED, why)
            raise
        finally:
            if self.heartbeat is not None:
                self.heartbeat.release([self.dispatch_id])
            self.done.set()
        return self.status

    def _task_calls(self, the_plan: Plan) -> dict[int, TaskCall]:
        templates: dict[tuple, CallTemplate] = {}
        calls = {}
        for nid, pc in the_plan.calls.items():
            template: CallTemplate | None
            if pc.kind is NodeKind.SUBLATTICE:  # each runs its own child dispatch
                template = CallTemplate(
                    self.dispatch_id,
                    pc.name,
                    pc.kind,
                    SublatticeCall(
                        pc.fn,
                        f"{self.dispatch_id}/{nid}",
                        pc.label,
                        run_sublattice,
                        self.chain,
                        self.max_depth,
                    ),
                    pc.options,
                )
            else:
                key = (id(pc.fn), id(pc.options), pc.name)
                template = templates.get(key)
                if template is None:
                    template = templates[key] = CallTemplate(
                        self.dispatch_id,
                        pc.name,
                        pc.kind,
                        pc.fn,
                        pc.options,
                        self._grant(pc.options.secrets),
                    )
            calls[nid] = TaskCall(
                template=template,
                node_id=nid,
                program=pc.program,
                args=pc.args,
                kwargs=pc.kwargs,
                dep_ids=pc.dep_ids,
            )
        return calls

    def _grant(self, names: tuple[str, ...]) -> SecretsGrant | None:
        """What tasks asking for ``names`` carry: where to fetch them, never values."""
        if not names:
            return None
        if names not in self._grants:
            keep = SecretKeep.of_home(Path(self.store.path).parent)
            self._grants[names] = grant_for(names, keep.folder)
        return self._grants[names]

    def _run(self) -> Status:
        the_plan = plan(self.graph)
        calls = self._task_calls(the_plan)
        self._op_waiting = {op: len(set(ps)) for op, ps in the_plan.op_parents.items()}
        # The calls live on as TaskCalls: keep only the OP wiring of the plan.
        self._plan = dataclasses.replace(the_plan, calls={})
        # Which real nodes wait for which refs: a node is ready when all its deps have
        # a value ref (for Ray nodes, at once on submit: Ray itself orders them).
        missing = {nid: len(c.dep_ids) for nid, c in calls.items()}
        waiters: dict[int, Any] = {}
        for nid, c in calls.items():
            for dep in c.dep_ids:
                waiters.setdefault(dep, []).append(nid)
        # As tuples of ints, which the garbage collector stops tracking: one list per
        # node of a fan-out would be thousands more objects for every collection to scan.
        waiters = {dep: tuple(children) for dep, children in waiters.items()}
        ready = collections.deque(nid for nid, n in missing.items() if n == 0)
        running: dict[int, Submission] = {}
        #: The node each running submission's future belongs to: the future itself is
        #: what its callback queues (a closure per node would be one more object).
        node_of: dict[Any, int] = {}
        notify = self._events.put
        blocked: set[int] = set()
        #: Calls held until their electron's first calls are timed (see packing).
        held: dict[int, list[int]] = {}
        #: Calls submitted inside a fused chain before their inputs were ready.
        fused: set[int] = set()

        def ref_ready(nid: int) -> None:
            for child in waiters.get(nid, ()):
                missing[child] -= 1
                if missing[child] == 0:
                    ready.append(child)

        def block(nid: int) -> None:
            """``nid`` will never have a value: nor will anything waiting on it."""
            todo = [nid]
            while todo:
                n = todo.pop()
                if n in blocked:
                    continue
                blocked.add(n)
                todo.extend(c for c in waiters.get(n, ()) if c not in running)

        if not self.resumed:
            self.rec.started()
        for op, waiting in list(self._op_waiting.items()):
            if waiting == 0 and self._finish_op(op):  # e.g. a lattice returning a literal
                self._completed(op)
        last_poll = last_placed = time.monotonic()
        while True:
            while ready and not self.rec.abandoned:
                nid = ready.popleft()
                if nid in blocked or nid in fused:
                    continue
                call = calls[nid]
                if nid in self._cancel_nodes:
                    self.rec.node(nid, status=Status.CANCELLED)
                    block(nid)
                elif nid in self.reuse:
                    self._reuse(nid)
                    ref_ready(nid)
                elif (size := self._pack_size(call, ready, running, calls)) is None:
                    held.setdefault(id(call.template), []).append(nid)  # until timed
                else:
                    if size > 1:  # ready calls of the same electron, up to its size: one task
                        members = [nid, *self._pack_mates(ready, calls, call, blocked, size - 1)]
                        subs = self._submit_pack(members, calls)
                    elif chain := self._chain_after(nid, calls, waiters, missing, blocked):
                        members = [nid, *chain]  # a linear chain, fused: one task
                        fused.update(chain)
                        subs = self._submit_pack(members, calls)
                    else:
                        members, subs = [nid], [self._submit(call)]
                    for member, sub in zip(members, subs):
                        if sub is None:
                            block(member)
                            continue
                        running[member] = sub
                        node_of[sub.done] = member
                        self.rec.node(member, status=Status.RUNNING)
                        sub.done.add_done_callback(notify)
                        if sub.value_ref is not None:  # a pack's member: when it is done
                            self._refs[member] = sub.value_ref
                            ref_ready(member)
            self.rec.flush(_FLUSH_S)

            if self._cancel_all:
                for nid, sub in running.items():
                    self._cancel_submission(calls[nid], sub, running)
                self.rec.cancel_unfinished(only_running=False)
                self.rec.finish(status=Status.CANCELLED)
                return Status.CANCELLED
            for nid in self._cancel_nodes & running.keys():
                sub = running[nid]
                if not sub.cancelled:
                    if sub.packed:  # its pack-mates run on: its own result is ignored
                        sub.cancelled = True
                    else:
                        self._cancel_submission(calls[nid], sub, running)
                    self.rec.node(nid, status=Status.CANCELLED, end_time=now_iso())
            if not running and held:  # nothing left to time them by: run them as they are
                for kept in held.values():
                    ready.extend(kept)
                held.clear()
                self._packing = PackPolicy(1.0, probes=False)
                continue
            if not running:
                break  # whatever is left waits on a node that failed or was cancelled

            due = self.rec.due_in(_FLUSH_S)
            try:
                event = self._events.get(timeout=_POLL_S if due is None else min(_POLL_S, due))
            except queue.Empty:
                event = None
            if self.rec.abandoned:  # the process is exiting: let go of Ray at once
                running.clear()
                self._refs.clear()
                return Status.FAILED
            while True:
                if isinstance(event, _Verdicts):  # from the placeability check
                    for lost in self._unplaceable(event, running, calls):
                        self._cancel_submission(calls[lost], running[lost], running)
                        del running[lost]
                        block(lost)
                    event = None
                done = node_of.pop(event, None) if event is not None else None
                if done is not None and done in running:
                    sub = running.pop(done)
                    if self._learn(calls[done], sub):  # its electron is timed: pack the rest
                        ready.extend(held.pop(id(calls[done].template), ()))
                    if isinstance(sub.done.exception(), PackSkipped):
                        # A fused call whose input failed: it never ran, as any other
                        # call waiting on a failure.
                        self.rec.node(done, status=Status.NEW_OBJECT)
                        block(done)
                    elif self._finish_node(done, sub):
                        if done not in self._refs:  # made outside Ray: ref only now
                            self._refs[done] = sub.value_ref
                            ref_ready(done)
                    else:
                        block(done)
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    break
            self.rec.flush(_FLUSH_S)
            if running and time.monotonic() - last_placed > _PLACEABLE_EVERY_S:
                last_placed = time.monotonic()
                self._check_placeable(running, calls)
            if time.monotonic() - last_poll > _POLL_S:
                last_poll = time.monotonic()
                row = self.store.get_status(self.dispatch_id) or {}
                if row.get("status") == Status.CANCELLED:  # cancelled from another process
                    self._cancel_all = True
        return self._finalize()

    def _check_placeable(self, running: dict[int, Submission], calls: dict[int, TaskCall]) -> None:
        """Ask, in a thread of its own, whether the cluster can still hold what is in
        flight; the answer comes back as a :class:`_Verdicts` event. (Asking Ray blocks
        for as long as its head does not answer, and the loop must not.)"""
        if self._placing is not None and self._placing.is_alive():
            return
        requests: dict[int, tuple[dict[str, float], str]] = {}
        for nid in running:  # by options object: a fan-out shares one
            call = calls[nid]
            key = id(call.options)
            if key not in requests:
                request = ray_request(call.options, call.template.kind is NodeKind.SUBLATTICE)
                if request is not None:
                    requests[key] = (request, f"Electron {call.template.name}")
        if not requests:
            return

        def judge() -> None:
            try:
                found = {k: no_longer_feasible(r, what) for k, (r, what) in requests.items()}
            except Exception:  # Ray itself is unreachable: the head watch says so
                return
            lost = {k: why for k, why in found.items() if why is not None}
            if lost:
                self._events.put(_Verdicts(lost))

        self._placing = threading.Thread(target=judge, name="qflow-placeable", daemon=True)
        self._placing.start()

    def _unplaceable(
        self, verdicts: _Verdicts, running: dict[int, Submission], calls: dict[int, TaskCall]
    ) -> list[int]:
        """Nodes in flight that no node of the cluster can hold any more, each recorded
        FAILED with the reason: Ray would keep them pending for ever."""
        out = []
        for nid in running:
            why = verdicts.by_options.get(id(calls[nid].options))
            if why is not None:
                self.rec.node(nid, status=Status.FAILED, end_time=now_iso(), error=why)
                out.append(nid)
        return out

    # ---------------------------------------------------------------- nodes
    def _reuse(self, nid: int) -> None:
        blob = self.reuse[nid]
        self._blobs[nid] = blob
        self._refs[nid] = ray.put(self._value(nid))
        if self.resumed:  # it ran before the crash: its record is already right
            self.rec.state[nid] = Status.COMPLETED
        else:
            now = now_iso()
            self.rec.node(
                nid,
                status=Status.COMPLETED,
                output=blob,
                start_time=now,
                end_time=now,
                stdout="",
                stderr="",
                error=None,
            )
        self._completed(nid)

    def _submit(self, call: TaskCall) -> Submission | None:
        if call.template.kind is NodeKind.SUBLATTICE and len(self.chain) >= self.max_depth:
            path = " -> ".join((*self.chain, call.label))
            self.rec.node(
                call.node_id,
                status=Status.FAILED,
                end_time=now_iso(),
                error=(
                    f"Sublattice {call.label} would nest {len(self.chain) + 1} deep, past the "
                    f"limit of {self.max_depth}: {path}. A lattice that calls itself needs a "
                    "base case that stops the recursion; to nest deeper on purpose, set "
                    "QFLOW_MAX_SUBLATTICE_DEPTH where the dispatcher runs."
                ),
            )
            return None
        try:
            executor = resolve_executor(call.options.executor)
            return executor.submit(call, [self._refs[d] for d in call.dep_ids])
        except Exception as exc:  # e.g. arguments Ray cannot serialize
            self.rec.node(
                call.node_id,
                status=Status.FAILED,
                end_time=now_iso(),
                error=f"Electron {call.label} could not be submitted: {exc}",
            )
            return None

    def _pack_size(
        self,
        call: TaskCall,
        ready: collections.deque[int],
        running: dict[int, Submission],
        calls: dict[int, TaskCall],
    ) -> int | None:
        """Calls to put in ``call``'s task (see :class:`PackPolicy`); None: hold it."""

        def alike() -> int:  # its electron's calls ready or running: packs share them out
            mine = call.template
            return (
                1
                + sum(1 for n in ready if calls[n].template is mine)
                + sum(1 for n in running if calls[n].template is mine)
            )

        return self._packing.size(call, alike)

    def _chain_after(
        self,
        nid: int,
        calls: dict[int, TaskCall],
        waiters: dict[int, Any],
        missing: dict[int, int],
        blocked: set[int],
    ) -> list[int]:
        """The calls after ``nid`` in a linear chain that may run fused with it: each
        the only child of the one before, waiting on nothing else, with the same options,
        and of an electron timed short (see :meth:`PackPolicy.chain_length`)."""
        call = calls[nid]
        room = self._packing.chain_length(call) - 1
        chain: list[int] = []
        current = nid
        while len(chain) < room:
            children = waiters.get(current, ())
            if len(children) != 1:
                break
            child = children[0]
            other = calls[child]
            if (
                (
                    other.template is not call.template
                    and (other.options != call.options or self._packing.chain_length(other) <= 1)
                )
                or child in blocked
                or child in self._cancel_nodes
                or child in self.reuse
                or missing[child] != 1
                or any(d != current and d not in self._refs for d in other.dep_ids)
            ):
                break
            chain.append(child)
            current = child
        return chain

    def _learn(self, call: TaskCall, sub: Submission) -> bool:
        """Time a finished call for packing; True when its electron's first timing."""
        fut = sub.done
        exc = fut.exception()
        outcome = fut.result() if exc is None else _unwrap(exc)[1]
        if outcome is None:
            return self._packing.learn(call, None, 0)
        size = len(outcome.output_blob) if outcome.output_blob is not None else None
        return self._packing.learn(call, outcome, size if exc is None else 0)

    def _pack_mates(
        self,
        ready: collections.deque[int],
        calls: dict[int, TaskCall],
        call: TaskCall,
        blocked: set[int],
        room: int,
    ) -> list[int]:
        """Take from ``ready`` up to ``room`` calls that can join ``call``'s pack: the
        same electron (one template), not cancelled, reused or blocked."""
        mates: list[int] = []
        for nid in list(ready):
            if len(mates) >= room:
                break
            other = calls[nid]
            if (
                other.template is call.template
                and nid not in blocked
                and nid not in self._cancel_nodes
                and nid not in self.reuse
            ):
                mates.append(nid)
        for nid in mates:
            ready.remove(nid)
        return mates

    def _submit_pack(
        self, members: list[int], calls: dict[int, TaskCall]
    ) -> list[Submission | None]:
        first = calls[members[0]]
        try:
            executor = resolve_executor(first.options.executor)
            position = {m: i for i, m in enumerate(members)}
            subs: list[Submission | None] = list(
                executor.submit_many(
                    [calls[m] for m in members],
                    [
                        [
                            InPack(position[d]) if d in position else self._refs[d]
                            for d in calls[m].dep_ids
                        ]
                        for m in members
                    ],
                )
            )
            return subs
        except Exception as exc:  # e.g. arguments Ray cannot serialize
            for m in members:
                self.rec.node(
                    m,
                    status=Status.FAILED,
                    end_time=now_iso(),
                    error=f"Electron {calls[m].label} could not be submitted: {exc}",
                )
            return [None] * len(members)

    def _cancel_submission(
        self, call: TaskCall, sub: Submission, running: dict[int, Submission]
    ) -> None:
        """Cancel ``sub`` now if its inputs exist, else as soon as they all do.

        Ray (2.60) aborts the whole owning process ("Tried to complete task that was
        not pending") when a task is cancelled while it still waits for its
        arguments: the cancel fails it, but once the arguments arrive it is pushed to
        a worker anyway, and that worker's reply finds no pending task. Seen on every
        other cancel of a chain. A task whose arguments exist is queued or running,
        and cancelling it there is safe; so the cancel waits for the inputs (the
        parents' completions, which cancelling the parents brings on quickly).
        """
        sub.cancelled = True
        self._cancel_once_inputs_exist(
            call, sub, [running[d].done for d in set(call.dep_ids) if d in running]
        )

    def _cancel_once_inputs_exist(
        self, call: TaskCall, sub: Submission, parents: list[Any]
    ) -> None:
        waiting = next((fut for fut in parents if not fut.done()), None)
        if waiting is not None:  # checked again when it is done
            waiting.add_done_callback(lambda _: self._cancel_once_inputs_exist(call, sub, parents))
            return
        # Inputs that have just come into being need a moment more with some executors
        # (Ray resolves a task's arguments in the callbacks of the completion that made
        # them), also when a parent's completion was seen just before the cancel came:
        # only a node without parents is cancelled at once.
        delay = resolve_executor(call.options.executor).cancel_delay_s if call.dep_ids else 0.0
        if delay <= 0:
            self._cancel_now(call, sub)
        else:
            timer = threading.Timer(delay, self._cancel_now, (call, sub))
            timer.daemon = True
            timer.start()

    @staticmethod
    def _cancel_now(call: TaskCall, sub: Submission) -> None:
        try:
            resolve_executor(call.options.executor).cancel(sub)
        except Exception:  # already finished or gone: nothing left to stop
            pass

    def _finish_node(self, nid: int, sub: Submission) -> bool:
        """Record a finished submission; True when it completed."""
        if self.rec.state[nid] is Status.CANCELLED:
            return False
        fut = sub.done
        exc = fut.exception()
        if exc is None:
            outcome: NodeOutcome | None = fut.result()
            assert outcome is not None  # the watcher sets a NodeOutcome or an error
            if outcome.value_ref is not None:  # where the value ended up (maybe rerouted)
                sub.value_ref = outcome.value_ref
                if nid in self._refs:
                    self._refs[nid] = outcome.value_ref
            blob = outcome.output_blob
            large = blob is None
            if blob is None:  # a large output travels once, as the task's value
                blob = cast(bytes, ray.get(self._refs.get(nid, sub.value_ref)).blob)
                self._not_held.add(nid)
            else:
                self._blobs[nid] = blob
            self._import_sublattice(nid, outcome)
            self.rec.node(
                nid,
                status=Status.COMPLETED,
                output=blob,
                output_text=outcome.output_text,
                start_time=_iso(outcome.start_time),
                end_time=_iso(outcome.end_time),
                stdout=outcome.stdout,
                stderr=outcome.stderr,
                ray_node_id=outcome.ray_node_id,
                host=outcome.host,
                error=None,
                slurm_job_id=outcome.slurm_job_id,
                inputs_text=outcome.inputs_text,
            )
            self.rec.metrics(outcome.metrics)
            if large:  # to disk now: one large output held here at a time
                del blob
                self.rec.flush()
            self._completed(nid)
            return True
        cause, outcome = _unwrap(exc)
        if outcome is not None and outcome.node_id == nid:
            self._import_sublattice(nid, outcome)
            self.rec.node(
                nid,
                status=Status.FAILED,
                error=outcome.error,
                start_time=_iso(outcome.start_time),
                end_time=_iso(outcome.end_time) or now_iso(),
                stdout=outcome.stdout,
                stderr=outcome.stderr,
                ray_node_id=outcome.ray_node_id,
                host=outcome.host,
                slurm_job_id=outcome.slurm_job_id,
                inputs_text=outcome.inputs_text,
            )
            self.rec.metrics(outcome.metrics)
        elif isinstance(cause, ray.exceptions.RuntimeEnvSetupError):
            self.rec.node(
                nid,
                status=Status.FAILED,
                end_time=now_iso(),
                error=env_setup_error(
                    self.graph.nodes[nid].label, self.graph.nodes[nid].options, cause
                ),
            )
        elif outcome is None and not isinstance(cause, ray.exceptions.TaskCancelledError):
            self.rec.node(
                nid,
                status=Status.FAILED,
                end_time=now_iso(),
                error=f"{type(cause).__name__}: {cause}",
            )
        else:  # a parent failed or was cancelled, so this node never ran
            self.rec.node(nid, status=Status.NEW_OBJECT)
        return False

    def _import_sublattice(self, nid: int, outcome: NodeOutcome) -> None:
        if outcome.sublattice is not None:
            sub_id = self.store.import_(
                outcome.sublattice, parent_id=self.dispatch_id, parent_node_id=nid
            )
            self.rec.node(nid, sublattice_id=sub_id)

    # ---------------------------------------------------------------- values and OPs
    def _value(self, nid: int) -> Any:
        if nid not in self._values:
            if nid in self._not_held:
                if nid in self._plan.op_parents:  # a container of large outputs
                    return cast(Expr, self.graph.nodes[nid].expr).evaluate(
                        {p: self._value(p) for p in self._plan.op_parents[nid]}
                    )
                return cloudpickle.loads(ray.get(self._refs[nid]).blob)
            self._values[nid] = cloudpickle.loads(self._blobs[nid])
        return self._values[nid]

    def _derived(self, expr: Expr) -> bool:
        """Whether ``expr`` only collects outputs into containers, and at least one of
        them is not held here: then it is stored as a recipe, not as a copy."""
        todo, found = [expr], False
        while todo:
            e = todo.pop()
            if isinstance(e, Ref):
                found = found or e.node_id in self._not_held
            elif isinstance(e, Apply):
                if e.op not in _CONTAINER_OPS:
                    return False
                todo.extend(e.operands)
        return found

    def _completed(self, nid: int) -> None:
        """Evaluate every OP node that ``nid`` completes, from direct parents' values."""
        todo = [nid]
        while todo:
            done = todo.pop()
            for op in self._plan.dependants.get(done, ()):
                self._op_waiting[op] -= 1
                if self._op_waiting[op] == 0 and self._finish_op(op):
                    todo.append(op)

    def _finish_op(self, op_id: int) -> bool:
        node = self.graph.nodes[op_id]
        expr = cast(Expr, node.expr)  # every OP node has one
        if self._derived(expr):
            self._not_held.add(op_id)
            now = now_iso()
            self.rec.node(
                op_id,
                status=Status.COMPLETED,
                start_time=now,
                end_time=now,
                output=dumps_value(DerivedOutput(expr)),
                output_text=_derived_text(expr),
                stdout="",
                stderr="",
            )
            return True
        try:
            value = expr.evaluate({p: self._value(p) for p in self._plan.op_parents[op_id]})
            blob = dumps_value(value)
        except Exception as exc:
            self.rec.node(
                op_id, status=Status.FAILED, end_time=now_iso(), error=f"{node.label}: {exc!r}"
            )
            return False
        self._values[op_id], self._blobs[op_id] = value, blob
        now = now_iso()
        self.rec.node(
            op_id,
            status=Status.COMPLETED,
            output=blob,
            start_time=now,
            end_time=now,
            stdout="",
            stderr="",
            output_text=value_text(value),
        )
        return True

    def _postprocess_node(self) -> int | None:
        """The node standing for the lattice's return value (graphs from before it
        existed have none)."""
        last = self.graph.nodes[-1] if self.graph.nodes else None
        while last is not None and last.kind is NodeKind.PARAMETER:
            last = self.graph.nodes[last.node_id - 1] if last.node_id else None
        if last is not None and last.kind is NodeKind.OP and last.name == POSTPROCESS_NAME:
            return last.node_id
        return None

    def _finalize(self) -> Status:
        nodes = self.graph.nodes
        state = self.rec.state
        failed = [n for n in nodes if state[n.node_id] is Status.FAILED]
        fields: dict[str, Any] = {}
        row = self.store.get_status(self.dispatch_id) or {}
        whole_cancel = self._cancel_all or row.get("status") == Status.CANCELLED
        if whole_cancel:
            fields.update(status=Status.CANCELLED)
        elif failed:
            self.rec.flush()
            errors = {
                r["node_id"]: r["error"] or ""
                for r in self.store.get_nodes(self.dispatch_id)
                if r["status"] == Status.FAILED
            }
            fields.update(
                status=Status.FAILED,
                error="\n".join(
                    f"Electron {n.label} failed:\n{errors.get(n.node_id, '').rstrip()}"
                    for n in failed
                ),
            )
        elif any(s is Status.CANCELLED for s in state.values()):
            fields.update(
                status=Status.CANCELLED,
                error="Cancelled nodes: "
                + ", ".join(n.label for n in nodes if state[n.node_id] is Status.CANCELLED),
            )
        else:
            expr = self.graph.output
            post = self._postprocess_node()
            try:
                if post is not None and state[post] is Status.COMPLETED:
                    # The postprocess node already holds the value: the same bytes
                    result = (
                        dumps_value(DerivedOutput(expr))
                        if post in self._not_held
                        else self._blobs[post]
                    )
                    text = (
                        _derived_text(expr)
                        if post in self._not_held
                        else value_text(self._value(post))
                    )
                    fields.update(
                        status=Status.COMPLETED, result=result, result_text=text, error=None
                    )
                elif post is not None:
                    raise RuntimeError(f"{nodes[post].label} did not complete")
                elif self._derived(expr):  # built from stored outputs on reading
                    result, text = dumps_value(DerivedOutput(expr)), _derived_text(expr)
                else:
                    value = expr.evaluate({r: self._value(r) for r in set(expr.refs())})
                    result, text = dumps_value(value), value_text(value)
                fields.update(status=Status.COMPLETED, result=result, result_text=text, error=None)
            except Exception as exc:
                fields.update(
                    status=Status.FAILED,
                    error=f"The lattice's return value could not be built: {exc!r}",
                )
        if fields["status"] is not Status.COMPLETED:
            self.rec.cancel_unfinished(only_running=not whole_cancel)
        self.rec.finish(**fields)
        return fields["status"]


def run_sublattice(call: SublatticeCall, *args: Any, **kwargs: Any) -> SublatticeOutput:
    """Build ``call``'s lattice with the arguments and run it as dispatch
    ``<parent>/<node>`` on this worker's Ray (the child's electrons are Ray tasks of
    their own, so independent ones run in parallel), in a store of its own whose
    records travel back to the parent's dispatcher."""
    from qflow.store.sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    new = build(call.lattice, args, kwargs, top_level=False)
    record(store, new, dispatch_id=call.child_id)
    status = Dispatcher(
        store, call.child_id, new.graph, chain=call.chain, max_depth=call.max_depth
    ).run()
    export = store.export(call.child_id)
    row = store.get_dispatch(call.child_id) or {}
    if status != Status.COMPLETED:
        exc = DispatchFailedError(
            f"Sublattice {call.label} ended {status}:\n{row.get('error') or ''}".rstrip()
        )
        exc.__qflow_sublattice__ = export  # type: ignore[attr-defined]
        raise exc
    outputs = {r["node_id"]: r["output"] for r in store.get_nodes(call.child_id)}

    def node_value(node_id: int) -> Any:  # what a result built from outputs reads
        return loads(outputs[node_id], node_value)

    value = loads(row["result"], node_value) if row.get("result") is not None else None
    return SublatticeOutput(value, export)
