"""Removing old dispatches: ``qflow.delete`` and ``qflow.gc`` (and the CLI's
``qflow delete`` and ``qflow gc``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from qflow.core.status import Status
from qflow.exceptions import QflowInputError

__all__ = ["delete", "gc", "parse_age"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str | timedelta) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` (or a timedelta) as a timedelta.

    Example:
        >>> parse_age("36h")
        datetime.timedelta(days=1, seconds=43200)
    """
    if isinstance(value, timedelta):
        age = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value))
        if not match:
            raise QflowInputError(
                f"An age is a number and a unit (s, m, h, d or w), such as 30d or 12h; got "
                f"{value!r}."
            )
        age = timedelta(**{_UNITS[match[2]]: float(match[1])})
    if age < timedelta(0):
        raise QflowInputError(f"An age cannot be negative; got {value!r}.")
    return age


def delete(dispatch_ids: Iterable[str] | str) -> int:
    """Delete finished dispatches, their nodes, sublattices and blob files.

    Returns:
        How many dispatch rows were removed (sublattices included).

    Raises:
        DispatchNotFoundError: an id is not in the store.
        QflowInputError: a dispatch is still running (cancel it first).

    Example:
        >>> import qflow
        >>> @qflow.lattice
        ... def flow():
        ...     return 1
        >>> qflow.delete(qflow.dispatch_sync(flow)().dispatch_id)
        1
    """
    from qflow._api import _status_row
    from qflow.remote.client import client_for
    from qflow.runtime.process import current as _runtime

    ids = [dispatch_ids] if isinstance(dispatch_ids, str) else list(dispatch_ids)
    client = client_for()
    if client is not None:
        return client.delete(ids)
    rt = _runtime()
    rows = [_status_row(rt, d) for d in ids]  # raises for an unknown id
    running = [
        r["dispatch_id"] for r in rows if not (Status(r["status"]).is_final and r["end_time"])
    ]
    if running:
        raise QflowInputError(
            f"Dispatches {running} are still running; cancel them first "
            "(qflow.cancel or `qflow cancel ID`), then delete."
        )
    return rt.store.delete_dispatches(ids)


def gc(older_than: str | timedelta = "30d") -> int:
    """Delete every finished top-level dispatch that ended more than ``older_than`` ago.

    Returns:
        How many dispatch rows were removed.
    """
    from qflow.runtime.process import current as _runtime

    cutoff = (datetime.now(UTC) - parse_age(older_than)).isoformat()
    rt = _runtime()
    ids = rt.store.finished_before(cutoff)
    return rt.store.delete_dispatches(ids) if ids else 0
