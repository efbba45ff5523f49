"""Where the running electron is (Covalent's ``get_context()``): set on the worker
around each electron's call, read by the user's code inside it.

Example:
    >>> get_context()
    TaskContext(dispatch_id=None, node_id=None)
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

__all__ = ["TaskContext", "get_context", "task_context"]


@dataclass(frozen=True)
class TaskContext:
    """Where the running electron is: Covalent's ``get_context()``."""

    dispatch_id: str | None
    node_id: int | None


_OUTSIDE = TaskContext(None, None)  # immutable: safe to share as the default
_CONTEXT: contextvars.ContextVar[TaskContext] = contextvars.ContextVar(
    "qflow_task_context", default=_OUTSIDE
)


class task_context:
    """Set :func:`get_context` for the electron running in this block (a class rather
    than a generator: it is entered once per task)."""

    __slots__ = ("_context", "_token")

    def __init__(self, dispatch_id: str, node_id: int) -> None:
        self._context = TaskContext(dispatch_id, node_id)

    def __enter__(self) -> None:
        self._token = _CONTEXT.set(self._context)

    def __exit__(self, *exc: object) -> None:
        _CONTEXT.reset(self._token)


def get_context() -> TaskContext:
    """Inside an electron, its ``dispatch_id`` and ``node_id`` (both None elsewhere)."""
    return _CONTEXT.get()
