"""Short text forms of values, written to the store beside the pickles.

Readers that must not unpickle (the web UI, exports) show these instead. Each is
capped: a 10,000-element list or a 50 MiB array becomes a few lines, not megabytes.

Example:
    >>> value_text(list(range(100)))
    '[0, 1, 2, 3, 4, 5, ...]'
    >>> len(value_text("x" * 10_000)) <= TEXT_LIMIT
    True
    >>> value_text({"blob": bytes(1000)})
    "{'blob': <1,000 bytes>}"
"""

from __future__ import annotations

import inspect
import reprlib
from typing import Any

#: The longest text stored for one value.
TEXT_LIMIT = 2000


class _Repr(reprlib.Repr):
    def repr_bytes(self, value: bytes, level: int) -> str:
        # Pickles and binary payloads read as noise: say what they are.
        return f"<{len(value):,} bytes>" if len(value) > 64 else repr(value)

    repr_bytearray = repr_bytes


_repr = _Repr()
_repr.maxlevel = 3
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 6
_repr.maxdict = 10
_repr.maxstring = 400
_repr.maxother = TEXT_LIMIT
_repr.maxlong = 200


_SCALARS = frozenset({int, float, bool, complex, type(None)})


def value_text(value: Any) -> str:
    """``repr(value)``, abbreviated and capped at :data:`TEXT_LIMIT` characters; never
    raises (a broken ``__repr__`` gives a note instead)."""
    if type(value) in _SCALARS:  # most outputs and arguments: reprlib's walk costs more
        return repr(value)
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a user's __repr__ can fail: say so rather than fail the node
        text = f"<{type(value).__name__}: repr failed: {exc!r}>"
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 3] + "..."
    return text


def value_text_join(parts: list[str]) -> str:
    """``(part, part, ...)`` capped at :data:`TEXT_LIMIT` characters."""
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 4] + "...)"


#: Source text by code object: a dispatch records its lattice's and electrons' source,
#: and reading it again for every dispatch of the same functions cost more than the
#: rest of a small dispatch's bookkeeping.
_sources: dict[Any, str | None] = {}


def source_text(fn: Any) -> str | None:
    """``inspect.getsource(fn)``, or None when Python has none (a function typed into a
    REPL, a builtin); remembered per code object.

    Example:
        >>> source_text(source_text).splitlines()[0]
        'def source_text(fn: Any) -> str | None:'
    """
    code = getattr(fn, "__code__", None)
    if code is not None and code in _sources:
        return _sources[code]
    try:
        text: str | None = inspect.getsource(fn)
    except (OSError, TypeError):
        text = None
    if code is not None:
        _sources[code] = text
    return text


def url_host(host: str) -> str:
    """``host`` as it stands in a URL: an IPv6 address in brackets.

    Example:
        >>> url_host("::1"), url_host("10.0.0.5")
        ('[::1]', '10.0.0.5')
    """
    return f"[{host}]" if ":" in host else host
