"""Every status change of one dispatch and its nodes, batched into store writes."""

from __future__ import annotations

import time
from typing import Any

from qflow.core.status import Status
from qflow.store.base import MetricPoint, ResultStore, now_iso


class Recorder:
    """Records node and dispatch changes for one dispatch.

    Node changes are kept in memory (``state`` always has each node's latest status)
    and written in one transaction per :meth:`flush`. After :meth:`abandon` nothing
    more is written: the process is exiting and another writer ended the dispatch.

    Example:
        >>> from qflow.store.sqlite import SQLiteStore
        >>> store = SQLiteStore(":memory:")
        >>> store.create_dispatch({"dispatch_id": "d", "name": "f", "status": "NEW_OBJECT",
        ...                        "created_at": "t"}, [{"node_id": 0, "name": "a",
        ...                        "kind": "electron", "status": "NEW_OBJECT"}])
        >>> rec = Recorder(store, "d", [0])
        >>> rec.node(0, status=Status.RUNNING)
        >>> rec.flush()
        >>> store.get_nodes("d")[0]["status"]
        'RUNNING'
    """

    def __init__(self, store: ResultStore, dispatch_id: str, node_ids: list[int]) -> None:
        self.store, self.dispatch_id = store, dispatch_id
        self.state: dict[int, Status] = dict.fromkeys(node_ids, Status.NEW_OBJECT)
        self._updates: list[tuple[int, dict[str, Any]]] = []
        self._metrics: list[MetricPoint] = []
        self._written_at = float("-inf")  # never: the first write is due at once
        self.abandoned = False

    def node(self, node_id: int, **fields: Any) -> None:
        if "status" in fields:
            self.state[node_id] = fields["status"]
        self._updates.append((node_id, fields))

    def metrics(self, points: list[MetricPoint]) -> None:
        self._metrics.extend(points)

    def due_in(self, interval: float) -> float | None:
        """Seconds until :meth:`flush` with ``interval`` would write; None when nothing
        waits to be written."""
        if not self._updates and not self._metrics:
            return None
        return max(0.0, self._written_at + interval - time.monotonic())

    def flush(self, interval: float = 0.0) -> None:
        """Write what changed, in one transaction; with ``interval``, only if the last
        write is at least that many seconds old."""
        if interval and time.monotonic() - self._written_at < interval:
            return
        self._written_at = time.monotonic()
        updates, self._updates = self._updates, []
        if updates and not self.abandoned:
            self.store.update_nodes(self.dispatch_id, updates)
        points, self._metrics = self._metrics, []
        if points and not self.abandoned:
            self.store.add_metrics(self.dispatch_id, points)

    def started(self) -> None:
        if not self.abandoned:
            self.store.update_dispatch(
                self.dispatch_id, status=Status.RUNNING, start_time=now_iso()
            )

    def cancel_unfinished(self, only_running: bool) -> None:
        """Nodes that will now never finish become CANCELLED (after a failure or a
        partial cancel only the RUNNING ones: the rest never ran and stay NEW_OBJECT)."""
        stuck = {Status.RUNNING} if only_running else {Status.RUNNING, Status.NEW_OBJECT}
        for nid, state in list(self.state.items()):
            if state in stuck:
                self.node(nid, status=Status.CANCELLED, end_time=now_iso())

    def finish(self, **fields: Any) -> None:
        """End the dispatch, unless something else (a reader that found this process
        gone) ended it first: a record never says both COMPLETED and "exited early"."""
        self.flush()
        if not self.abandoned:
            self.store.update_dispatch(
                self.dispatch_id, only_if_unfinished=True, end_time=now_iso(), **fields
            )

    def abandon(self) -> None:
        self.abandoned = True
