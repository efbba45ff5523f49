"""Dispatch a lattice again whenever something happens: Covalent's ``ct.triggers``.

Attach triggers with ``@ct.lattice(triggers=[...])``. ``ct.dispatch(lattice)(...)``
then registers them with the ``qflow start`` service, which watches on its own (so
triggers outlive the script, and are picked up again if the service restarts) and
starts a new dispatch, with the same inputs, each time one fires. The id
``dispatch`` returns names the registration; ``ct.stop_triggers(id)`` ends it, and its
result is then the list of dispatch ids the triggers started.

Example:
    >>> import qflow as ct
    >>> trigger = ct.triggers.TimeTrigger(time_gap=60)
    >>> fired = []
    >>> trigger.attach(lambda: fired.append("new-id") or "new-id")
    >>> trigger.trigger()
    >>> fired, trigger.new_dispatch_ids
    (['new-id'], ['new-id'])
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qflow.exceptions import QflowInputError

__all__ = ["BaseTrigger", "DirTrigger", "SQLiteTrigger", "TimeTrigger"]


class BaseTrigger:
    """A condition watched by the service. Subclasses define :meth:`observe`, which
    blocks, calling :meth:`trigger` each time the condition holds, until
    :meth:`stop` (check :attr:`stopped`, or wait on it with :meth:`wait`)."""

    def __init__(
        self,
        lattice_dispatch_id: str | None = None,
        dispatcher_addr: str | None = None,
        triggers_server_addr: str | None = None,
    ) -> None:
        self.lattice_dispatch_id = lattice_dispatch_id
        self.new_dispatch_ids: list[str] = []
        self._stop = threading.Event()
        self._fire: Callable[[], str] | None = None

    def __getstate__(self) -> dict[str, Any]:  # an Event does not pickle
        return {k: v for k, v in self.__dict__.items() if k not in ("_stop", "_fire")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stop, self._fire = threading.Event(), None

    def attach(self, fire: Callable[[], str]) -> None:
        """Set what :meth:`trigger` does: start a dispatch and return its id."""
        self._fire = fire

    def trigger(self) -> None:
        """Start a new dispatch of the lattice."""
        if self._fire is None:
            raise QflowInputError(
                "This trigger is not registered: attach it to a lattice "
                "(@ct.lattice(triggers=...)) and dispatch that."
            )
        self.new_dispatch_ids.append(self._fire())

    def observe(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define observe().")

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if stopped meanwhile."""
        return self._stop.wait(seconds)


class TimeTrigger(BaseTrigger):
    """Fires at once, then every ``time_gap`` seconds (as Covalent's does)."""

    def __init__(self, time_gap: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(time_gap, bool) or not isinstance(time_gap, int | float) or time_gap <= 0:
            raise QflowInputError(
                f"TimeTrigger's time_gap is a number of seconds > 0; got {time_gap!r}."
            )
        self.time_gap = float(time_gap)

    def observe(self) -> None:
        if self.stopped:
            return
        self.trigger()
        while not self.wait(self.time_gap):
            self.trigger()


_DIR_EVENTS = ("created", "modified", "deleted", "moved")


class DirTrigger(BaseTrigger):
    """Fires on changes to the files in a folder, polled every ``poll_interval`` seconds.

    Args:
        dir_path: the folder.
        event_names: one or more of ``created``, ``modified``, ``deleted``, ``moved``
            (a move is seen as a deletion and a creation); each changed file fires once.
        recursive: watch subfolders too.
    """

    def __init__(
        self,
        dir_path: str,
        event_names: str | Iterable[str],
        poll_interval: float = 0.25,
        recursive: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        names = [event_names] if isinstance(event_names, str) else list(event_names)
        bad = [n for n in names if n not in _DIR_EVENTS]
        if bad or not names:
            raise QflowInputError(
                f"DirTrigger's event_names are among {list(_DIR_EVENTS)}; got {event_names!r}."
            )
        self.dir_path, self.event_names = str(dir_path), names
        self.poll_interval, self.recursive = float(poll_interval), recursive

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        root = Path(self.dir_path)
        files = root.rglob("*") if self.recursive else root.glob("*")
        out = {}
        for path in files:
            try:
                st = path.stat()
            except OSError:  # gone between listing and stat
                continue
            if path.is_file():
                out[str(path)] = (st.st_mtime_ns, st.st_size)
        return out

    def observe(self) -> None:
        before = self._snapshot()
        moved = "moved" in self.event_names
        while not self.wait(self.poll_interval):
            now = self._snapshot()
            created = now.keys() - before.keys()
            deleted = before.keys() - now.keys()
            count = 0
            if "created" in self.event_names or moved:
                count += len(created)
            if "deleted" in self.event_names or moved:
                count += len(deleted)
            if "modified" in self.event_names:
                count += sum(1 for p in now.keys() & before.keys() if now[p] != before[p])
            before = now
            for _ in range(count):
                self.trigger()


class SQLiteTrigger(BaseTrigger):
    """Fires when ``trigger_after_n`` new rows have appeared in a table (matching
    ``where_clauses``, e.g. ``["status = 'ready'"]``), polled every ``poll_interval`` s."""

    def __init__(
        self,
        db_path: str,
        table_name: str,
        poll_interval: float = 1,
        where_clauses: list[str] | None = None,
        trigger_after_n: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not str(table_name).isidentifier():
            raise QflowInputError(
                f"SQLiteTrigger's table_name is a plain table name; got {table_name!r}."
            )
        if not isinstance(trigger_after_n, int) or trigger_after_n < 1:
            raise QflowInputError(f"trigger_after_n is an int >= 1; got {trigger_after_n!r}.")
        self.db_path, self.table_name = str(db_path), table_name
        self.poll_interval, self.trigger_after_n = float(poll_interval), trigger_after_n
        self.where_clauses = list(where_clauses or [])

    def _count(self) -> int:
        where = (
            " WHERE " + " AND ".join(f"({c})" for c in self.where_clauses)
            if self.where_clauses
            else ""
        )
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(f"SELECT COUNT(*) FROM {self.table_name}{where}").fetchone()[0]

    def observe(self) -> None:
        seen = self._count()
        while not self.wait(self.poll_interval):
            now = self._count()
            while now - seen >= self.trigger_after_n:
                seen += self.trigger_after_n
                self.trigger()
            seen = min(seen, now)  # rows deleted: count again from here
