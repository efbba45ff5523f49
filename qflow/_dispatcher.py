"""Runs one recorded graph on its executors and writes what happens to a store.

Ray does the scheduling: every Ray node is submitted at once with the ObjectRefs
of its parents, so data never round-trips through the dispatcher. Only nodes
behind an executor that yields values outside Ray (``local``, ``slurm``) wait
here until their parents' refs exist. The dispatcher's own job is bookkeeping:
record each node as it finishes, evaluate ``OP`` nodes, and decide the outcome.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import cloudpickle
import ray

from qflow._graph import Expr, Graph, NodeKind, Ref
from qflow._lease import Heartbeat
from qflow._options import DEFAULT_OPTIONS
from qflow._status import Status
from qflow._task import META_ATTR, PickledFunction, TaskCall
from qflow.exceptions import QflowSerializationError
from qflow.executors import Submission, resolve_executor
from qflow.store.base import ResultStore, now_iso

_POLL_S = 0.25

# The dispatcher reads every node's outcome itself; a failed node's value ref is
# dropped unread on purpose, so Ray's "Unhandled error" log line would be noise.
os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")


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
            h.update(cloudpickle.dumps((node.name, str(node.kind), node.fn, node.args,
                                        node.kwargs, node.expr, node.after)))
        except Exception:  # unpicklable: never reusable
            h.update(str(time.time_ns()).encode())
        for parent in node.parents():
            h.update(out[parent].encode())
        out[node.node_id] = h.hexdigest()
    return out


def check_picklable(graph: Graph) -> None:
    """Raise :class:`QflowSerializationError` naming the first electron whose function or
    arguments cannot be pickled, before any compute is spent."""
    checked: set[int] = set()  # a fan-out calls one function many times: check it once
    for node in graph.nodes:
        parts = {f"argument {i}": a for i, a in enumerate(node.args)}
        parts.update({f"argument {k!r}": v for k, v in node.kwargs.items()})
        if id(node.fn) not in checked:
            checked.add(id(node.fn))
            parts["function"] = node.fn
        for what, value in parts.items():
            try:
                cloudpickle.dumps(value)
            except Exception as exc:
                raise QflowSerializationError(
                    f"The {what} of electron {node.label} cannot be pickled ({exc!r}), so it "
                    "cannot be shipped to a Ray worker. Pass plain data (numbers, arrays, "
                    "paths) and open handles such as files, locks or sockets inside the "
                    "electron."
                ) from exc


def record_new_dispatch(store: ResultStore, dispatch_id: str, graph: Graph, *,
                        inputs: bytes | None, graph_blob: bytes | None,
                        parent_id: str | None = None, parent_node_id: int | None = None,
                        owner: str | None = None) -> None:
    """Insert the dispatch row, owned by ``owner``, and a NEW_OBJECT row per node."""
    store.create_dispatch(
        {"dispatch_id": dispatch_id, "name": graph.name, "status": Status.NEW_OBJECT,
         "parent_id": parent_id, "parent_node_id": parent_node_id, "created_at": now_iso(),
         "owner": owner, "heartbeat": time.time(),
         "inputs": inputs, "graph": graph_blob, "graph_text": graph.describe()},
        [{"node_id": n.node_id, "name": n.name, "kind": str(n.kind),
          "parents": repr(n.parents()), "status": Status.NEW_OBJECT} for n in graph.nodes],
    )


def _unwrap(exc: BaseException) -> tuple[BaseException, dict[str, Any] | None]:
    """The user's exception behind a Ray error, and the meta the task attached to it."""
    cause = exc
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None) or exc
    return cause, getattr(cause, META_ATTR, None)


class Dispatcher:
    """Executes ``graph`` as dispatch ``dispatch_id``; :meth:`run` blocks until done.

    Args:
        store: where node and dispatch rows are written.
        dispatch_id: an id already recorded by :func:`record_new_dispatch`.
        graph: the graph to run.
        reuse: node id -> pickled output of nodes to take from an earlier dispatch.
        heartbeat: claims the dispatch for this process while it runs.
    """

    def __init__(self, store: ResultStore, dispatch_id: str, graph: Graph,
                 reuse: dict[int, bytes] | None = None, heartbeat: Heartbeat | None = None) -> None:
        self.store, self.dispatch_id, self.graph = store, dispatch_id, graph
        self.reuse = reuse or {}
        self.heartbeat = heartbeat
        self.done = threading.Event()
        self.status: Status = Status.NEW_OBJECT
        self._wake: cf.Future = cf.Future()
        self._lock = threading.Lock()
        self._cancel_all = False
        self._cancel_nodes: set[int] = set()
        self._blobs: dict[int, bytes] = {}
        self._values: dict[int, Any] = {}
        self._state: dict[int, Status] = {n.node_id: Status.NEW_OBJECT for n in graph.nodes}
        self._updates: list[tuple[int, dict[str, Any]]] = []
        self._abandoned = False

    # ---------------------------------------------------------------- control
    def abandon(self) -> None:
        """Stop writing to the store: this process is exiting and another record of the
        dispatch's end (written by the caller) must not be overwritten."""
        self._abandoned = True

    def cancel(self, task_ids: Iterable[int] | None = None) -> None:
        """Cancel the whole dispatch, or only ``task_ids`` (their dependants never run)."""
        with self._lock:
            if task_ids is None:
                self._cancel_all = True
            else:
                self._cancel_nodes.update(task_ids)
            wake, self._wake = self._wake, cf.Future()
        wake.set_result(None)

    # ---------------------------------------------------------------- helpers
    def _record(self, node_id: int, **fields: Any) -> None:
        if "status" in fields:
            self._state[node_id] = fields["status"]
        self._updates.append((node_id, fields))

    def _flush(self) -> None:
        updates, self._updates = self._updates, []
        if not self._abandoned:
            self.store.update_nodes(self.dispatch_id, updates)

    def _value(self, node_id: int) -> Any:
        if node_id not in self._values:
            self._values[node_id] = cloudpickle.loads(self._blobs[node_id])
        return self._values[node_id]

    def _calls(self) -> dict[int, TaskCall]:
        ops = self.graph.op_exprs()
        calls = {}
        pickled: dict[int, PickledFunction] = {}
        for node in self.graph.nodes:
            if node.kind is NodeKind.OP:
                continue
            if id(node.fn) not in pickled:
                pickled[id(node.fn)] = PickledFunction(node.fn)
            args = tuple(e.substitute(ops) for e in node.args)
            kwargs = {k: e.substitute(ops) for k, e in node.kwargs.items()}
            deps: dict[int, None] = {}
            for expr in [*args, *kwargs.values(), *(Ref(a).substitute(ops) for a in node.after)]:
                deps.update(dict.fromkeys(expr.refs()))
            calls[node.node_id] = TaskCall(
                dispatch_id=self.dispatch_id, node_id=node.node_id, name=node.name,
                kind=node.kind, fn=pickled[id(node.fn)], args=args, kwargs=kwargs, dep_ids=tuple(deps),
                options=node.options or DEFAULT_OPTIONS)
        return calls

    # ---------------------------------------------------------------- run
    def run(self) -> Status:
        """Run to the end and return the final status; never raises for node failures."""
        if self.heartbeat is not None:
            self.heartbeat.claim(self.dispatch_id)
        try:
            self.status = self._run()
        except BaseException as exc:
            self.status = Status.FAILED
            self.store.end_dispatch(self.dispatch_id, Status.FAILED,
                                    f"The dispatcher itself failed: {exc!r}")
            raise
        finally:
            if self.heartbeat is not None:
                self.heartbeat.release([self.dispatch_id])
            self.done.set()
        return self.status

    def _run(self) -> Status:
        calls = self._calls()
        ops = self.graph.op_exprs()
        # Which OP nodes wait on which real nodes, so each completion checks only its own.
        op_waits = {i: set(e.substitute(ops).refs()) for i, e in ops.items()}
        op_by_real: dict[int, list[int]] = {}
        for op_id, reals in op_waits.items():
            for real in reals:
                op_by_real.setdefault(real, []).append(op_id)

        self.store.update_dispatch(self.dispatch_id, status=Status.RUNNING, start_time=now_iso())
        pending = list(calls)
        refs: dict[int, Any] = {}
        blocked: set[int] = set()
        running: dict[cf.Future, tuple[int, Submission]] = {}
        last_poll = time.monotonic()

        def completed(node_id: int) -> None:
            for op_id in op_by_real.get(node_id, ()):
                op_waits[op_id].discard(node_id)
                if not op_waits[op_id]:
                    self._finish_op(op_id, ops[op_id].substitute(ops))

        while True:
            progressed = True
            while progressed:
                progressed, still = False, []
                for nid in pending:
                    if self._advance(calls[nid], refs, blocked, running, completed):
                        progressed = True
                    else:
                        still.append(nid)
                pending = still
            self._flush()

            if self._cancel_all:
                for nid, sub in running.values():
                    self._cancel_submission(call=calls[nid], sub=sub)
                self._cancel_unfinished()
                self._flush()
                self.store.update_dispatch(self.dispatch_id, only_if_unfinished=True,
                                           status=Status.CANCELLED, end_time=now_iso())
                return Status.CANCELLED
            for nid, sub in list(running.values()):
                if nid in self._cancel_nodes and not sub.cancelled:
                    self._cancel_submission(call=calls[nid], sub=sub)
                    self._record(nid, status=Status.CANCELLED, end_time=now_iso())
            if not running and not pending:
                break
            if not running:  # pending nodes wait on refs that can no longer appear
                blocked.update(pending)
                pending = []
                continue

            done, _ = cf.wait([*running, self._wake], timeout=_POLL_S,
                              return_when=cf.FIRST_COMPLETED)
            for fut in done:
                if fut not in running:
                    continue
                nid, sub = running.pop(fut)
                if self._finish_node(nid, fut, refs, blocked):
                    completed(nid)
            self._flush()
            if time.monotonic() - last_poll > _POLL_S:
                last_poll = time.monotonic()
                row = self.store.get_status(self.dispatch_id) or {}
                if row.get("status") == Status.CANCELLED:  # cancelled from another process
                    self._cancel_all = True

        return self._finalize(ops)

    def _advance(self, call: TaskCall, refs: dict[int, Any], blocked: set[int],
                 running: dict[cf.Future, tuple[int, Submission]], completed: Any) -> bool:
        """Submit, reuse, cancel or block one pending node; False if it must keep waiting."""
        nid = call.node_id
        if nid in self._cancel_nodes:
            self._record(nid, status=Status.CANCELLED)
            blocked.add(nid)
        elif any(d in blocked for d in call.dep_ids):
            blocked.add(nid)
        elif nid in self.reuse:
            self._blobs[nid] = self.reuse[nid]
            refs[nid] = ray.put(self._value(nid))
            self._record(nid, status=Status.COMPLETED, output=self.reuse[nid],
                         start_time=now_iso(), end_time=now_iso(), stdout="", stderr="",
                         error=None)
            completed(nid)
        elif all(d in refs for d in call.dep_ids):
            sub = self._submit(call, refs)
            if sub is None:
                blocked.add(nid)
                return True
            if sub.value_ref is not None:
                refs[nid] = sub.value_ref
            running[sub.done] = (nid, sub)
            self._record(nid, status=Status.RUNNING)
        else:
            return False
        return True

    def _submit(self, call: TaskCall, refs: dict[int, Any]) -> Submission | None:
        try:
            executor = resolve_executor(call.options.executor)
            return executor.submit(call, [refs[d] for d in call.dep_ids])
        except Exception as exc:  # e.g. arguments Ray cannot serialize
            self._record(call.node_id, status=Status.FAILED, end_time=now_iso(),
                         error=f"Electron {call.label} could not be submitted: {exc!r}")
            return None

    def _cancel_submission(self, call: TaskCall, sub: Submission) -> None:
        sub.cancelled = True
        try:
            resolve_executor(call.options.executor).cancel(sub)
        except Exception:  # already finished or gone: nothing left to stop
            pass

    def _finish_node(self, nid: int, fut: cf.Future, refs: dict[int, Any],
                     blocked: set[int]) -> bool:
        """Record a finished submission; True when it completed."""
        if self._state[nid] is Status.CANCELLED:
            blocked.add(nid)
            return False
        exc = fut.exception()
        if exc is None:
            meta = fut.result()
            if "value_ref" in meta:
                refs[nid] = meta.pop("value_ref")
            self._blobs[nid] = meta["output_blob"]
            self._import_sublattice(nid, meta)
            self._record(nid, status=Status.COMPLETED, output=meta["output_blob"],
                         start_time=_iso(meta["start_time"]), end_time=_iso(meta["end_time"]),
                         stdout=meta["stdout"], stderr=meta["stderr"],
                         ray_node_id=meta.get("ray_node_id"), error=None)
            return True
        blocked.add(nid)
        cause, meta = _unwrap(exc)
        if meta is not None and meta.get("node_id") == nid:
            self._import_sublattice(nid, meta)
            self._record(nid, status=Status.FAILED, error=meta["error"],
                         start_time=_iso(meta["start_time"]), end_time=_iso(meta["end_time"]),
                         stdout=meta["stdout"], stderr=meta["stderr"],
                         ray_node_id=meta.get("ray_node_id"))
        elif meta is None and not isinstance(cause, ray.exceptions.TaskCancelledError):
            self._record(nid, status=Status.FAILED, end_time=now_iso(),
                         error=f"{type(cause).__name__}: {cause}")
        else:  # a parent failed or was cancelled, so this node never ran
            self._record(nid, status=Status.NEW_OBJECT)
        return False

    def _import_sublattice(self, nid: int, meta: dict[str, Any]) -> None:
        data = meta.get("sublattice")
        if data is not None:
            sub_id = self.store.import_(data, parent_id=self.dispatch_id, parent_node_id=nid)
            self._record(nid, sublattice_id=sub_id)

    def _finish_op(self, op_id: int, expr: Expr) -> None:
        try:
            value = expr.evaluate({r: self._value(r) for r in expr.refs()})
            blob = cloudpickle.dumps(value)
        except Exception as exc:
            self._record(op_id, status=Status.FAILED, end_time=now_iso(),
                         error=f"{self.graph.nodes[op_id].label}: {exc!r}")
            return
        self._values[op_id], self._blobs[op_id] = value, blob
        self._record(op_id, status=Status.COMPLETED, output=blob, start_time=now_iso(),
                     end_time=now_iso(), stdout="", stderr="")

    def _finalize(self, ops: dict[int, Expr]) -> Status:
        nodes = self.graph.nodes
        failed = [n for n in nodes if self._state[n.node_id] is Status.FAILED]
        fields: dict[str, Any] = {"end_time": now_iso()}
        row = self.store.get_status(self.dispatch_id) or {}
        whole_cancel = self._cancel_all or row.get("status") == Status.CANCELLED
        if whole_cancel:
            fields.update(status=Status.CANCELLED)
        elif failed:
            errors = self.store.get_nodes(self.dispatch_id)
            text = {r["node_id"]: r["error"] or "" for r in errors}
            fields.update(status=Status.FAILED, error="\n".join(
                f"Electron {n.label} failed:\n{text[n.node_id].rstrip()}" for n in failed))
        elif any(s is Status.CANCELLED for s in self._state.values()):
            fields.update(status=Status.CANCELLED,
                          error="Cancelled nodes: " + ", ".join(
                              n.label for n in nodes if self._state[n.node_id] is Status.CANCELLED))
        else:
            expr = self.graph.output.substitute(ops)
            try:
                value = expr.evaluate({r: self._value(r) for r in expr.refs()})
                fields.update(status=Status.COMPLETED, result=cloudpickle.dumps(value),
                              error=None)
            except Exception as exc:
                fields.update(status=Status.FAILED,
                              error=f"The lattice's return value could not be built: {exc!r}")
        if fields["status"] is not Status.COMPLETED:
            self._cancel_unfinished(only_running=not whole_cancel)
            self._flush()
        # Conditional: whoever ended the dispatch first (this, or a reader that found its
        # owner gone) wins, so a record never says both COMPLETED and "exited early".
        self.store.update_dispatch(self.dispatch_id, only_if_unfinished=True, **fields)
        return fields["status"]

    def _cancel_unfinished(self, only_running: bool = False) -> None:
        """Mark nodes that will now never finish CANCELLED (after a failure or a partial
        cancel, only the RUNNING ones: the rest simply never ran, and stay NEW_OBJECT)."""
        stuck = {Status.RUNNING} if only_running else {Status.RUNNING, Status.NEW_OBJECT}
        for nid, state in list(self._state.items()):
            if state in stuck:
                self._record(nid, status=Status.CANCELLED, end_time=now_iso())
