"""Tracebacks as the user should see them: their own frames, not qflow's or Ray's."""

from __future__ import annotations

import functools
import os
import re
import traceback
from types import TracebackType

from qflow.exceptions import QflowError

# qflow's runtime package (this module's folder); its backends and algorithms stay
# visible, since a user's circuit or cost function is called from there and those
# frames help.
#: The qflow package's folder (this module is in its core/ wing): frames from it are
#: qflow's, not the user's.
_RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


_REMOTE = "Raised in the backend's worker:"


@functools.cache
def _hidden_dirs() -> tuple[str, ...]:
    dirs = [_RUNTIME_DIR]
    try:
        import ray

        dirs.append(os.path.dirname(os.path.abspath(ray.__file__)) + os.sep)
    except ImportError:
        pass
    return tuple(dirs)


def _hidden(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_hidden_dirs())


def user_traceback(exc: BaseException) -> str:
    """Format ``exc`` with qflow's and Ray's own frames left out.

    If every frame of a part is qflow's: a :class:`~qflow.QflowError` (qflow's own,
    self-explanatory message) is shown without a stack, anything else (a qflow bug)
    keeps its frames.

    Example:
        >>> try:
        ...     1 / 0
        ... except ZeroDivisionError as exc:
        ...     print(user_traceback(exc).splitlines()[-1])
        ZeroDivisionError: division by zero
    """
    te = traceback.TracebackException.from_exception(exc)
    for part in _chain(te):
        kept = [f for f in part.stack if not _hidden(f.filename)]
        remote = any(n.startswith(_REMOTE) for n in (part.__notes__ or ()))
        if kept or remote or issubclass(part.exc_type or object, QflowError):
            part.stack = traceback.StackSummary.from_list(kept)
    return "".join(te.format())


def _chain(te: traceback.TracebackException | None) -> list[traceback.TracebackException]:
    out: list[traceback.TracebackException] = []
    seen: set[int] = set()
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        out.append(te)
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    return out


def strip_frames(tb: TracebackType | None) -> TracebackType | None:
    """The first frame of ``tb`` outside qflow and Ray, for re-raising a user's error."""
    while tb is not None and _hidden(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _strip_text(text: str) -> str:
    """Drop ``File "..."`` entries of qflow's and Ray's own files from a formatted
    traceback (each entry is its ``File`` line and the indented lines under it)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith('File "'):
            filename = stripped[6:].split('"', 1)[0]
            skipping = _hidden(filename)
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


def remote_cause(exc: BaseException) -> BaseException:
    """The user's own exception behind a Ray task or actor error, ready to re-raise.

    Ray wraps an exception raised in an actor in a ``RayTaskError`` whose text runs
    through Ray's and qflow's frames. This returns the original exception (its own
    type, so ``except ZeroDivisionError`` works) with the remote traceback, trimmed to
    the user's frames, attached as a note; anything else comes back unchanged.
    """
    import ray

    if not isinstance(exc, ray.exceptions.RayTaskError):
        return exc
    cause = getattr(exc, "cause", None)
    if not isinstance(cause, BaseException) or isinstance(cause, ray.exceptions.RayError):
        return exc
    text = getattr(exc, "traceback_str", None) or str(exc)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [
        ln
        for ln in text.splitlines()[1:]  # the first names Ray's worker process
        if ln.strip() and set(ln.strip()) - set("^~")
    ]
    remote = _strip_text("\n".join(lines))
    note = _REMOTE + "\n" + remote
    if remote and note not in getattr(cause, "__notes__", ()):
        cause.add_note(note)
    return cause
