"""What runs where an electron runs: hooks, the function, capture and timing.

The dispatcher hands an executor a :class:`TaskCall` and the values of the nodes it
reads; :func:`execute_call` turns them into ``(value, meta)``. ``meta`` carries the
pickled output, captured stdout/stderr, timings and the Ray node. On failure the
exception is re-raised unchanged (so Ray's ``retry_exceptions`` still matches its
type) with the same meta attached as ``__qflow_meta__``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cloudpickle

from qflow._graph import Expr, NodeKind
from qflow._traceback import user_traceback
from qflow._options import ElectronOptions
from qflow.exceptions import QflowSerializationError

META_ATTR = "__qflow_meta__"


class PickledFunction:
    """A function pickled once by the dispatcher and unpickled once per worker.

    Shipping the function itself would make Ray cloudpickle it (by value, for
    electrons) again for every task of a fan-out.
    """

    __slots__ = ("blob", "digest")
    _cache: dict[str, Any] = {}

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


@dataclass
class TaskCall:
    """One electron or sublattice, with its arguments folded to real-node references."""

    dispatch_id: str
    node_id: int
    name: str
    kind: NodeKind
    fn: Any
    args: tuple[Expr, ...]
    kwargs: dict[str, Expr]
    dep_ids: tuple[int, ...]
    options: ElectronOptions = field(default_factory=ElectronOptions)

    @property
    def label(self) -> str:
        return f"{self.name}({self.node_id})"


class _Tee(io.StringIO):
    """Captures what the electron prints, and still shows it on the real stream."""

    def __init__(self, real: Any) -> None:
        super().__init__()
        self._real = real

    def write(self, s: str) -> int:
        with contextlib.suppress(Exception):
            self._real.write(s)
        return super().write(s)


def _ray_node_id() -> str | None:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray: no node to name
        pass
    return None


def execute_call(call: TaskCall, dep_values: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    """Run one node where it was scheduled and return ``(value, meta)``."""
    values = dict(zip(call.dep_ids, dep_values))
    meta: dict[str, Any] = {
        "node_id": call.node_id,
        "start_time": datetime.now(UTC),
        "ray_node_id": _ray_node_id(),
    }
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            opts = call.options
            opts.deps_bash.run()
            kwargs = {k: e.evaluate(values) for k, e in call.kwargs.items()}
            for hook in opts.call_before:
                retval = hook.call()
                if hook.retval_keyword:
                    kwargs[hook.retval_keyword] = retval
            args = [e.evaluate(values) for e in call.args]
            if call.kind is NodeKind.SUBLATTICE:
                from qflow._sublattice import run_sublattice

                value = run_sublattice(call, args, kwargs, meta)
            else:
                fn = call.fn.load() if isinstance(call.fn, PickledFunction) else call.fn
                value = fn(*args, **kwargs)
            for hook in opts.call_after:
                hook.call()
        meta["output_blob"] = _dumps_output(call, value)
    except BaseException as exc:
        meta.update(
            end_time=datetime.now(UTC),
            stdout=out.getvalue(),
            stderr=err.getvalue(),
            error=user_traceback(exc),
        )
        with contextlib.suppress(Exception):
            setattr(exc, META_ATTR, meta)
        raise
    meta.update(end_time=datetime.now(UTC), stdout=out.getvalue(), stderr=err.getvalue())
    return value, meta


def _dumps_output(call: TaskCall, value: Any) -> bytes:
    try:
        return cloudpickle.dumps(value)
    except Exception as exc:
        raise QflowSerializationError(
            f"The output of electron {call.label} cannot be pickled: {exc!r}. Return plain "
            "data (numbers, arrays, dicts) instead of handles such as locks, sockets or "
            "open files."
        ) from exc
