"""What runs where an electron runs: hooks, the function, capture and timing.

The dispatcher hands an executor a :class:`TaskCall` and the values of the nodes it
reads; :func:`execute_call` turns them into ``(value, outcome)``: the value for
dependants, and a :class:`NodeOutcome` (the pickled output, captured stdout/stderr,
timings, the Ray node) for the store. On failure the exception is re-raised
unchanged (so Ray's ``retry_exceptions`` still matches its type) with the outcome
attached as ``__qflow_outcome__``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
import io
import pickle
import struct
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cloudpickle

from qflow.core import node_progress as progress
from qflow.core.context import task_context
from qflow.core.graph import NodeKind
from qflow.core.metrics import collecting
from qflow.core.options import ElectronOptions
from qflow.core.plan import NO_STEPS, Operand, Program, resolve
from qflow.core.text import value_text, value_text_join
from qflow.core.tracebacks import user_traceback
from qflow.exceptions import QflowSerializationError
from qflow.executor import is_plugin
from qflow.secrets.grant import SecretLease, SecretsGrant
from qflow.store.base import MetricPoint, now_iso

OUTCOME_ATTR = "__qflow_outcome__"


@dataclass
class NodeOutcome:
    """What running one node produced, for the store.

    Attributes:
        node_id: the node.
        start_time, end_time: when it ran, in UTC as the store writes it (ISO 8601), or
            None if it never started.
        stdout, stderr: what it printed.
        ray_node_id: the Ray node it ran on.
        host: that node's host name and IP address, "name (ip)".
        output_blob: the pickled output (None on failure).
        error: the user's traceback (None on success).
        sublattice: a sublattice's child dispatch, exported for the parent's store.
        value_ref: for executors that make the value outside Ray, its ObjectRef.
        slurm_job_id: the Slurm job that ran it, if any.
        output_text: a short text form of the output, for readers that never unpickle.
        metrics: what the electron logged with :func:`qflow.log_metric`.
        inputs_text: a short text form of the arguments the function was called with.
    """

    node_id: int
    start_time: str | None = None
    end_time: str | None = None
    stdout: str = ""
    stderr: str = ""
    ray_node_id: str | None = None
    output_blob: bytes | None = None
    error: str | None = None
    sublattice: dict[str, Any] | None = None
    value_ref: Any = None
    slurm_job_id: str | None = None
    output_text: str | None = None
    metrics: list[MetricPoint] = field(default_factory=list)
    inputs_text: str | None = None
    host: str | None = None

    def to_wire(self) -> bytes:
        """Plain values only, pickled here by the C pickler: Ray ships one byte string
        in a twentieth of the time it takes to serialize a tuple of fields, once per
        task. ``value_ref`` stays behind."""
        return pickle.dumps(
            (
                self.node_id,
                self.start_time,
                self.end_time,
                self.stdout,
                self.stderr,
                self.ray_node_id,
                self.output_blob,
                self.error,
                self.sublattice,
                self.slurm_job_id,
                self.output_text,
                [(p.name, p.step, p.value, p.time, p.error, p.meta) for p in self.metrics],
                self.inputs_text,
                self.host,
            ),
            protocol=5,
        )

    @classmethod
    def from_wire(cls, wire: bytes) -> NodeOutcome:
        nid, start, end, stdout, stderr, ray_node, blob, error, sub, slurm, text, pts, inp, host = (
            pickle.loads(wire)
        )
        return cls(
            node_id=nid,
            start_time=start,
            end_time=end,
            stdout=stdout,
            stderr=stderr,
            ray_node_id=ray_node,
            output_blob=blob,
            error=error,
            sublattice=sub,
            slurm_job_id=slurm,
            output_text=text,
            metrics=[MetricPoint(nid, *p) for p in pts],
            inputs_text=inp,
            host=host,
        )


#: Outputs whose pickle is larger than this travel to dependants as that pickle
#: (:class:`PickledValue`), so each is serialized once, not once for Ray and once for
#: the store, and is shipped once.
LARGE_OUTPUT = 1024 * 1024


class PickledValue:
    """A large node output, already pickled: what dependants and the store receive."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[Any, ...]:
        return (PickledValue, (self.blob,))

    def load(self) -> Any:
        return cloudpickle.loads(self.blob)


@dataclass(frozen=True)
class SublatticeOutput:
    """What a sublattice's callable returns: the value and the child's records."""

    value: Any
    export: dict[str, Any]


class PickledFunction:
    """A function pickled once by the dispatcher and unpickled once per worker.

    Shipping the function itself would make Ray cloudpickle it (by value, for
    electrons) again for every task of a fan-out.
    """

    __slots__ = ("blob", "digest")
    _cache: ClassVar[dict[str, Any]] = {}

    def __init__(self, fn: Any) -> None:
        self.blob = cloudpickle.dumps(fn)
        self.digest = hashlib.sha1(self.blob).hexdigest()

    def __getstate__(self) -> tuple[bytes, str]:
        return self.blob, self.digest

    def __setstate__(self, state: tuple[bytes, str]) -> None:
        self.blob, self.digest = state

    def load(self) -> Any:
        fn = PickledFunction._cache.get(self.digest)
        if fn is None:
            fn = PickledFunction._cache[self.digest] = cloudpickle.loads(self.blob)
        return fn


class CallTemplate:
    """What the tasks of one function share in a dispatch: the dispatch id, the node
    name and kind, the function and the options.

    It is pickled once, however many tasks carry it, and unpickled once per worker:
    a fan-out of 10,000 would otherwise make Ray pickle the function and options
    10,000 times.
    """

    __slots__ = ("_blob", "_head", "dispatch_id", "fn", "grant", "kind", "name", "options")
    #: Templates by the digest of their pickle (bytes), most recently used last.
    _loaded: ClassVar[collections.OrderedDict[Any, CallTemplate]] = collections.OrderedDict()

    def __init__(
        self,
        dispatch_id: str,
        name: str,
        kind: NodeKind,
        fn: Any,
        options: ElectronOptions,
        grant: SecretsGrant | None = None,
    ) -> None:
        self.dispatch_id, self.name, self.kind, self.fn = dispatch_id, name, kind, fn
        self.options = options
        #: Where the secrets ``options.secrets`` names are fetched from (never values).
        self.grant = grant
        self._blob: tuple[bytes, bytes] | None = None
        self._head: bytes | None = None

    def wire(self) -> tuple[bytes, bytes]:
        """The pickled template and its digest, made once."""
        if self._blob is None:
            blob = cloudpickle.dumps(
                (self.dispatch_id, self.name, self.kind, self.fn, self.options, self.grant)
            )
            self._blob = (blob, hashlib.sha1(blob).digest())
        return self._blob

    def wire_head(self) -> bytes:
        """What every :meth:`TaskCall.to_wire` of this template starts with, joined
        once: the template's digest (20 bytes), its length, and the pickled template."""
        if self._head is None:
            blob, digest = self.wire()
            self._head = b"".join((digest, _BLOB_LEN.pack(len(blob)), blob))
        return self._head

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_template, self.wire())


def _load_template(blob: bytes | memoryview, digest: Any) -> CallTemplate:
    cache = CallTemplate._loaded
    template = cache.get(digest)
    if template is None:
        template = cache[digest] = CallTemplate(*cloudpickle.loads(blob))
        if len(cache) > 256:  # a long-lived worker serves many dispatches
            cache.popitem(last=False)
    return template


#: A :class:`TaskCall` as :meth:`TaskCall.parts` splits it: the template's head and the
#: per-node spec.
CallParts = tuple[bytes, tuple[Any, ...]]


@dataclass
class TaskCall:
    """One electron or sublattice: its shared :class:`CallTemplate`, and a program that
    builds its arguments from the outputs of the real nodes ``dep_ids`` (see
    :mod:`qflow.core.plan`)."""

    template: CallTemplate
    node_id: int
    program: Program
    args: tuple[Operand, ...]
    kwargs: dict[str, Operand]
    dep_ids: tuple[int, ...]

    dispatch_id = property(lambda self: self.template.dispatch_id)
    name = property(lambda self: self.template.name)
    kind = property(lambda self: self.template.kind)
    fn = property(lambda self: self.template.fn)
    options = property(lambda self: self.template.options)

    @property
    def label(self) -> str:
        return f"{self.name}({self.node_id})"

    def to_wire(self) -> bytes:
        """The template, its digest and the per-node spec in one byte string, which
        Ray ships without pickling (each further task argument costs Ray about 15 µs
        to submit, more than this whole call).

        The per-node spec is pickled by the C pickler when every literal in it is a
        plain scalar (the common fan-out), which costs a fraction of cloudpickle.
        """
        head, spec = self.parts()
        plain = (
            all(map(_plain, self.args))
            and (not self.kwargs or all(map(_plain, self.kwargs.values())))
            and (
                not self.program.steps
                or all(_plain(o) for _, operands in self.program.steps for o in operands)
            )
        )
        spec_blob = pickle.dumps(spec, protocol=5) if plain else cloudpickle.dumps(spec, protocol=5)
        return head + spec_blob

    def parts(self) -> CallParts:
        """:meth:`to_wire`'s two halves, unjoined and the second unpickled: the
        template's head (one object for every call of the template) and the per-node
        spec. Calls that travel together in one pickle then share the head, and any
        literal they share, since pickle writes an object once: a group of a loop's
        chunks would otherwise repeat its template and its spec in every call."""
        # The steps, not the Program: a dataclass costs the pickler a class lookup.
        spec = (self.node_id, self.program.steps, self.args, self.kwargs, self.dep_ids)
        return self.template.wire_head(), spec

    @classmethod
    def from_wire(cls, wire: bytes) -> TaskCall:
        (blob_len,) = _BLOB_LEN.unpack_from(wire, _DIGEST_LEN)
        view = memoryview(wire)
        return cls.from_parts(
            view[: _BLOB_AT + blob_len], pickle.loads(view[_BLOB_AT + blob_len :])
        )

    @classmethod
    def from_parts(cls, head: bytes | memoryview, spec: tuple[Any, ...]) -> TaskCall:
        """The call :meth:`parts` split."""
        # A worker has the template after its first task of the dispatch: look it up
        # by the digest, and slice the pickled template only when it is missing.
        digest = bytes(head[:_DIGEST_LEN])
        template = CallTemplate._loaded.get(digest)
        if template is None:
            template = _load_template(memoryview(head)[_BLOB_AT:], digest)
        node_id, steps, args, kwargs, dep_ids = spec
        return cls(
            template=template,
            node_id=node_id,
            program=Program(steps) if steps else NO_STEPS,
            args=args,
            kwargs=kwargs,
            dep_ids=dep_ids,
        )


_DIGEST_LEN = 20  # sha1
_BLOB_LEN = struct.Struct("<I")
_BLOB_AT = _DIGEST_LEN + _BLOB_LEN.size  # where the pickled template starts


#: Literals the standard pickler writes exactly as cloudpickle would.
PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _plain(operand: Operand) -> bool:
    return operand[0] != "c" or type(operand[1]) in PLAIN_TYPES


class _Tee(io.StringIO):
    """Captures what the electron prints, and still shows it on the real stream.

    While the electron holds secrets (``lease.active``), text is held back to the end of
    its line and redacted before either stream sees it: a value printed in pieces is
    still one line.
    """

    def __init__(self, real: Any, lease: SecretLease) -> None:
        super().__init__()
        self._real = real
        self._lease = lease
        self._pending = ""

    def write(self, s: str) -> int:
        if self._lease.active:
            text = self._pending + s
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) < 65536:
                self._pending = text
                return len(s)
            self._pending, text = ("", text) if cut == 0 else (text[cut:], text[:cut])
            self._emit(self._lease.redact(text))
            return len(s)
        self._emit(s)
        return len(s)

    def _emit(self, s: str) -> None:
        with contextlib.suppress(Exception):
            self._real.write(s)
        super().write(s)

    def finish(self) -> str:
        """Everything captured, the held-back tail included (redacted)."""
        if self._pending:
            self._emit(self._lease.redact(self._pending))
            self._pending = ""
        return self.getvalue()


class _Routed:
    """Stands in for ``sys.stdout`` (or ``sys.stderr``) while electrons run: a write goes
    to the capture of the electron running in the writing thread. Electrons that run
    side by side in one process (``executor="local"``) thus each keep their own output.
    A thread no electron runs in (one an electron started, say) writes to the only
    capture when there is one, as a plain swap of ``sys.stdout`` would, and otherwise to
    the stream this replaced."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.targets: dict[int, Any] = {}

    def _target(self) -> Any:
        targets = self.targets
        target = targets.get(threading.get_ident())
        if target is None:
            target = next(iter(targets.values())) if len(targets) == 1 else self.base
        return target

    def write(self, s: str) -> int:
        return self._target().write(s)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        with contextlib.suppress(Exception):
            self._target().flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...
        return getattr(self.base, name)


def _unrouted(stream: Any) -> Any:
    """The real stream behind a :class:`_Routed` one (a capture tees to it)."""
    return stream.base if isinstance(stream, _Routed) else stream


_route_lock = threading.Lock()
_routes: list[_Routed] = []  # [stdout, stderr] while any electron runs here


class _Captured:
    """``sys.stdout`` and ``sys.stderr`` write to ``out`` and ``err`` from this thread in
    the block, as ``contextlib.redirect_stdout`` and ``redirect_stderr`` would, but
    without taking another thread's prints (see :class:`_Routed`)."""

    __slots__ = ("_streams",)

    def __init__(self, out: Any, err: Any) -> None:
        self._streams = (out, err)

    def __enter__(self) -> None:
        me = threading.get_ident()
        with _route_lock:
            if not _routes:
                _routes[:] = [_Routed(sys.stdout), _Routed(sys.stderr)]
                sys.stdout, sys.stderr = _routes
            _routes[0].targets[me], _routes[1].targets[me] = self._streams

    def __exit__(self, *exc: object) -> None:
        me = threading.get_ident()
        with _route_lock:
            out, err = _routes
            out.targets.pop(me, None)
            err.targets.pop(me, None)
            if not out.targets:
                if sys.stdout is out:
                    sys.stdout = out.base
                if sys.stderr is err:
                    sys.stderr = err.base
                _routes.clear()


_node_id: list[str] = []  # a worker process never moves to another node: ask once


def _ray_node_id() -> str | None:
    if _node_id:
        return _node_id[0]
    try:
        import ray

        if ray.is_initialized():
            _node_id.append(ray.get_runtime_context().get_node_id())
            return _node_id[0]
    except Exception:  # not inside Ray: no node to name
        pass
    return None


_host: list[str] = []


def _host_text() -> str:
    """This machine as "Ran on" shows it: its host name and IP address."""
    if not _host:
        import socket

        name = socket.gethostname()
        try:
            import ray

            ip = ray.util.get_node_ip_address()
        except Exception:  # not inside Ray: the name alone
            ip = ""
        _host.append(f"{name} ({ip})" if ip and ip != name else name)
    return _host[0]


def execute_call(call: TaskCall, dep_values: Sequence[Any]) -> tuple[Any, NodeOutcome]:
    """Run one node where it was scheduled and return ``(value, outcome)``."""
    values = {
        d: v.load() if isinstance(v, PickledValue) else v for d, v in zip(call.dep_ids, dep_values)
    }
    outcome = NodeOutcome(
        node_id=call.node_id, start_time=now_iso(), ray_node_id=_ray_node_id(), host=_host_text()
    )
    lease = SecretLease(call.template.grant)
    out, err = _Tee(_unrouted(sys.stdout), lease), _Tee(_unrouted(sys.stderr), lease)
    progress.begin(call.dispatch_id, call.node_id, out, err, outcome.ray_node_id, outcome.host)
    try:
        with (
            _Captured(out, err),
            lease,
            collecting(call.node_id) as outcome.metrics,
            task_context(call.dispatch_id, call.node_id),
        ):
            opts = call.options
            opts.deps_bash.run()
            steps = call.program.run(values)
            kwargs = {k: resolve(o, values, steps) for k, o in call.kwargs.items()}
            injected: dict[str, list[Any]] = {}
            for hook in opts.call_before:
                retval = hook.call()
                if hook.retval_keyword:
                    injected.setdefault(hook.retval_keyword, []).append(retval)
            for key, got in injected.items():  # a repeated keyword collects a list
                kwargs[key] = got[0] if len(got) == 1 else got
            if opts.files:
                paths = [
                    ft.run()
                    if ft.order == "before"
                    else (ft.from_file.filepath, ft.to_file.filepath)
                    for ft in opts.files
                ]
                if _takes(call.fn, "files"):  # Covalent passes the (from, to) pairs
                    kwargs["files"] = paths
            args = [resolve(o, values, steps) for o in call.args]
            outcome.inputs_text = _call_text(args, kwargs)
            progress.inputs(outcome.inputs_text)
            executor = opts.executor
            if is_plugin(executor):
                # A Covalent executor plugin: its run() calls the function, here
                value = executor._qflow_run(
                    call.fn,
                    args,
                    kwargs,
                    {"dispatch_id": call.dispatch_id, "node_id": call.node_id, "results_dir": None},
                )
            else:
                value = call.fn(*args, **kwargs)
            if isinstance(value, SublatticeOutput):
                outcome.sublattice, value = value.export, value.value
            for ft in opts.files:
                if ft.order == "after":
                    ft.run()
            for hook in opts.call_after:
                hook.call()
        outcome.output_blob = _dumps_output(call, value)
        lease.refuse_in(outcome.output_blob, f"The output of electron {call.label}")
        outcome.output_text = value_text(value)
    except BaseException as exc:
        progress.end()
        outcome.sublattice = getattr(exc, "__qflow_sublattice__", None)
        outcome.end_time = now_iso()
        outcome.error = lease.redact(user_traceback(exc))
        lease.scrub(exc)  # what Ray stores and logs of the exception
        # As in Covalent, a failed node's stderr ends with the traceback.
        outcome.stdout, outcome.stderr = out.finish(), err.finish() + outcome.error
        lease.close()
        with contextlib.suppress(Exception):
            setattr(exc, OUTCOME_ATTR, outcome)
        raise
    progress.end()
    outcome.end_time = now_iso()
    outcome.stdout, outcome.stderr = out.finish(), err.finish()
    lease.close()
    if is_plugin(opts.executor):
        opts.executor._qflow_logs(outcome.stdout, outcome.stderr)
    return value, outcome


def _takes(fn: Any, name: str) -> bool:
    """Whether ``fn`` accepts a keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call_text(args: list[Any], kwargs: dict[str, Any]) -> str:
    """``(a, b, key=c)`` as the function received them, each abbreviated."""
    parts = [value_text(a) for a in args] + [f"{k}={value_text(v)}" for k, v in kwargs.items()]
    return value_text_join(parts)


def dumps_value(value: Any) -> bytes:
    """Pickle a node output or result for the store.

    Protocol 4 because it pickles equal values to equal bytes: protocol 5 marks a
    read-only numpy buffer (every array a Ray task receives) differently from a
    writeable one, and content-named blob files rely on equal bytes.
    """
    if type(value) in PLAIN_TYPES:  # the C pickler writes the same bytes, sooner
        return pickle.dumps(value, protocol=4)
    plain = getattr(type(value), "__plain_pickle__", None)
    if plain is not None and plain(value):  # a type that knows it holds no code
        return pickle.dumps(value, protocol=4)
    return cloudpickle.dumps(value, protocol=4)


def _dumps_output(call: TaskCall, value: Any) -> bytes:
    try:
        return dumps_value(value)
    except Exception as exc:
        raise QflowSerializationError(
            f"The output of electron {call.label} cannot be pickled: {exc!r}. Return plain "
            "data (numbers, arrays, dicts) instead of handles such as locks, sockets or "
            "open files."
        ) from exc


def run_shipped(
    call: TaskCall, dep_values: Sequence[Any], kept_up_to: int = LARGE_OUTPUT
) -> tuple[Any, NodeOutcome]:
    """:func:`execute_call` for a Ray worker: an output whose pickle is larger than
    ``kept_up_to`` is returned as that pickle (:class:`PickledValue`), to be shipped
    once, and its outcome carries no copy of it."""
    value, outcome = execute_call(call, dep_values)
    blob = outcome.output_blob
    if blob is not None and len(blob) > kept_up_to:
        outcome.output_blob = None
        return PickledValue(blob), outcome
    return value, outcome
