"""The recorder on its own: batching, the write interval, abandoning. A real SQLite
store, no Ray."""

from __future__ import annotations

import qflow
from qflow._recorder import Recorder
from qflow.store.sqlite import SQLiteStore


def _one_node_store(tmp_path):
    """A store holding dispatch "d" with one node, 0."""
    store = SQLiteStore(tmp_path / "q.db")
    store.create_dispatch(
        {"dispatch_id": "d", "name": "f", "status": "NEW_OBJECT", "created_at": "t"},
        [{"node_id": 0, "name": "a", "kind": "electron", "status": "NEW_OBJECT"}],
    )
    return store


def test_recorder_batches_and_respects_abandon(tmp_path):
    store = _one_node_store(tmp_path)
    rec = Recorder(store, "d", [0])
    rec.node(0, status=qflow.status.RUNNING)
    assert store.get_nodes("d")[0]["status"] == "NEW_OBJECT"  # not yet flushed
    rec.flush()
    assert store.get_nodes("d")[0]["status"] == "RUNNING"
    rec.abandon()
    rec.node(0, status=qflow.status.COMPLETED)
    rec.finish(status=qflow.status.COMPLETED)
    assert store.get_nodes("d")[0]["status"] == "RUNNING"
    assert store.get_dispatch("d")["end_time"] is None


def test_recorder_writes_at_most_once_per_interval(tmp_path):
    """The dispatcher writes node records at most every _FLUSH_S seconds (a chain of
    quick electrons would otherwise cost a transaction each); the loop waits no longer
    than the next write is due."""
    store = _one_node_store(tmp_path)
    rec = Recorder(store, "d", [0])
    assert rec.due_in(60) is None  # nothing to write: the loop may wait its full poll
    rec.node(0, status=qflow.status.RUNNING)
    assert rec.due_in(60) == 0  # never written yet: due now
    rec.flush(60)
    assert store.get_nodes("d")[0]["status"] == "RUNNING"
    rec.node(0, status=qflow.status.COMPLETED)
    rec.flush(60)  # written under a minute ago: kept for later
    assert store.get_nodes("d")[0]["status"] == "RUNNING"
    assert 59 < rec.due_in(60) <= 60
    rec.flush()  # the end of a dispatch writes whatever waits
    assert store.get_nodes("d")[0]["status"] == "COMPLETED" and rec.due_in(60) is None
