"""The SQLite results store."""

import sqlite3
import threading

import pytest

import qflow
from qflow.exceptions import StoreError
from qflow.store.sqlite import BLOB_INLINE_LIMIT, SCHEMA_VERSION, SQLiteStore


def _dispatch(store, dispatch_id="d1", n=2):
    store.create_dispatch(
        {
            "dispatch_id": dispatch_id,
            "name": "flow",
            "status": "NEW_OBJECT",
            "created_at": "2026-01-01T00:00:00",
        },
        [
            {"node_id": i, "name": f"n{i}", "kind": "electron", "status": "NEW_OBJECT"}
            for i in range(n)
        ],
    )


class TestSQLiteStore:
    def test_schema_version_and_wal(self, tmp_path):
        """A new store is at the current schema version, in WAL mode."""
        SQLiteStore(tmp_path / "q.db")
        db = sqlite3.connect(tmp_path / "q.db")
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_newer_schema_refused(self, tmp_path):
        """A store from a newer qflow is refused with advice, not corrupted."""
        db = sqlite3.connect(tmp_path / "q.db")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        db.close()
        with pytest.raises(StoreError, match="newer than this qflow understands"):
            SQLiteStore(tmp_path / "q.db")

    def test_roundtrip_and_large_blob_goes_to_file(self, tmp_path):
        """Rows round-trip; outputs over the limit live in files beside the DB."""
        store = SQLiteStore(tmp_path / "q.db")
        _dispatch(store)
        big = b"b" * (BLOB_INLINE_LIMIT + 1)
        store.update_nodes(
            "d1",
            [(0, {"status": "COMPLETED", "output": big}), (1, {"status": "FAILED", "error": "E"})],
        )
        nodes = SQLiteStore(tmp_path / "q.db").get_nodes("d1")
        assert nodes[0]["output"] == big and nodes[1]["error"] == "E"
        assert list((tmp_path / "blobs").rglob("*.pkl"))
        raw = (
            sqlite3.connect(tmp_path / "q.db")
            .execute("SELECT length(output) FROM nodes WHERE node_id=0")
            .fetchone()[0]
        )
        assert raw < 1000

    def test_concurrent_writers(self, tmp_path):
        """Threads writing different dispatches at once lose nothing."""
        store = SQLiteStore(tmp_path / "q.db")

        def work(i):
            _dispatch(store, f"d{i}", n=5)
            for node in range(5):
                store.update_nodes(f"d{i}", [(node, {"status": "COMPLETED"})])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(10):
            assert [n["status"] for n in store.get_nodes(f"d{i}")] == ["COMPLETED"] * 5


@qflow.electron
def double(x):
    return 2 * x


@qflow.lattice
def doubles(x):
    return [double(x + i) for i in range(3)]


def test_twenty_concurrent_dispatches_consistent():
    """20 dispatches in flight at once all complete with consistent rows."""
    ids = [qflow.dispatch(doubles)(i) for i in range(20)]
    for i, dispatch_id in enumerate(ids):
        res = qflow.get_result(dispatch_id, wait=True, timeout=120)
        assert res.result == [2 * (i + k) for k in range(3)]
        # 3 electrons, their 3 parameter nodes and the return value's node
        assert [n["status"] for n in res.get_all_node_results()] == ["COMPLETED"] * 7
    listed = {r["dispatch_id"] for r in qflow._api._runtime().store.list_dispatches(100)}
    assert set(ids) <= listed


def test_updates_of_one_node_in_one_batch_keep_their_order(tmp_path):
    """A node changed twice in one batch ends with the later change, whatever columns
    each change sets."""
    from qflow.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    store.create_dispatch(
        {"dispatch_id": "d", "name": "f", "status": "RUNNING", "created_at": "t"},
        [{"node_id": i, "name": "a", "kind": "electron", "status": "NEW_OBJECT"} for i in range(2)],
    )
    store.update_nodes(
        "d",
        [
            (0, {"status": "RUNNING"}),
            (0, {"status": "CANCELLED", "end_time": "t1"}),
            (1, {"status": "RUNNING"}),
            (0, {"status": "COMPLETED"}),
        ],
    )
    nodes = {n["node_id"]: n for n in store.get_nodes("d")}
    assert nodes[0]["status"] == "COMPLETED" and nodes[0]["end_time"] == "t1"
    assert nodes[1]["status"] == "RUNNING"


def test_many_nodes_taking_one_status_and_then_others_in_one_batch(tmp_path):
    """Status-only changes of many nodes (one statement) keep their place among the
    other changes of the batch, also when a run of them mixes statuses."""
    from qflow.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    store.create_dispatch(
        {"dispatch_id": "d", "name": "f", "status": "RUNNING", "created_at": "t"},
        [{"node_id": i, "name": "a", "kind": "electron", "status": "NEW_OBJECT"} for i in range(6)],
    )
    store.update_nodes(
        "d",
        [
            *((i, {"status": "RUNNING"}) for i in range(5)),
            (2, {"status": "COMPLETED", "end_time": "t2"}),
            (3, {"status": "FAILED"}),
            (4, {"status": "CANCELLED"}),
            (2, {"status": "RUNNING", "end_time": None}),
            (2, {"status": "COMPLETED", "end_time": "t3"}),
        ],
    )
    nodes = {n["node_id"]: n for n in store.get_nodes("d")}
    assert [nodes[i]["status"] for i in range(6)] == [
        "RUNNING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "NEW_OBJECT",
    ]
    assert nodes[2]["end_time"] == "t3"


def test_a_store_from_a_development_build_of_version_3_is_completed(tmp_path):
    """Some development builds wrote version 3 with part of version 6 in it (node
    executor and Slurm job, the metrics table) and others without: both upgrade."""
    import sqlite3

    from qflow.store import sqlite as sq

    for extra in (
        "",
        """
            ALTER TABLE nodes ADD COLUMN executor TEXT;
            ALTER TABLE nodes ADD COLUMN slurm_job_id TEXT;
            CREATE TABLE metrics (dispatch_id TEXT NOT NULL, node_id INTEGER,
                                  name TEXT NOT NULL, step REAL, value REAL, time REAL);
            CREATE INDEX metrics_dispatch ON metrics(dispatch_id, name, step)""",
    ):
        path = tmp_path / f"v3{len(extra)}.db"
        db = sqlite3.connect(path, isolation_level=None)
        for migration in sq.MIGRATIONS[:3]:
            migration(db)
        sq._run_script(db, extra)
        db.execute("PRAGMA user_version=3")
        db.close()
        store = sq.SQLiteStore(path)
        store.create_dispatch(
            {
                "dispatch_id": "d",
                "name": "f",
                "status": "RUNNING",
                "created_at": "t",
                "tags": '["x"]',
            },
            [
                {
                    "node_id": 0,
                    "name": "a",
                    "kind": "electron",
                    "status": "RUNNING",
                    "inputs_text": "(1)",
                    "executor": "ray",
                }
            ],
        )
        from qflow.store.base import MetricPoint

        store.add_metrics("d", [MetricPoint(0, "m", 0.0, 1.0, 0.0)])
        assert store.get_node_texts("d")[0]["inputs_text"] == "(1)"
        assert (
            sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == sq.SCHEMA_VERSION
        )


def test_a_sweep_never_removes_a_blob_a_writer_is_about_to_point_at(tmp_path):
    """A delete in one process races a running dispatch's writes in another.

    Each round, finished dispatch ``old`` holds a large value; a writer stores the same
    value (content addressing finds its file already there) while another store deletes
    ``old`` and sweeps the blobs folder. The writer's output must stay readable.
    """
    writer, deleter = SQLiteStore(tmp_path / "q.db"), SQLiteStore(tmp_path / "q.db")
    _dispatch(writer, "live", n=60)
    lost = []
    for i in range(60):
        value = bytes([i % 256]) * (BLOB_INLINE_LIMIT + 1 + i)
        _dispatch(writer, f"old{i}", n=1)
        writer.update_nodes(f"old{i}", [(0, {"status": "COMPLETED", "output": value})])
        start = threading.Barrier(2)

        def write(i=i, value=value, start=start):
            start.wait()
            writer.update_nodes("live", [(i, {"status": "COMPLETED", "output": value})])

        def delete(i=i, start=start):
            start.wait()
            deleter.delete_dispatches([f"old{i}"])

        threads = [threading.Thread(target=write), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if writer.get_nodes("live")[i]["output"] != value:
            lost.append(i)
    assert not lost, f"outputs of rounds {lost} were swept away while being written"
