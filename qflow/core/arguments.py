"""Normalising option arguments that take one object or a list of them."""

from __future__ import annotations

from typing import Any

from qflow.exceptions import QflowInputError

__all__ = ["one_or_many"]


def one_or_many(value: Any, cls: type, error: Any) -> tuple[Any, ...]:
    """An option given as None, one ``cls`` instance or a list of them, as a tuple.

    Raises:
        QflowInputError: ``error(bad_items)`` for items that are not ``cls`` instances.
    """
    if value is None:
        return ()
    items = [value] if isinstance(value, cls) else list(value)
    bad = [i for i in items if not isinstance(i, cls)]
    if bad:
        raise QflowInputError(error(bad))
    return tuple(items)
