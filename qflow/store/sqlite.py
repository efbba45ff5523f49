"""SQLite results store: one file under ``$QFLOW_HOME``, WAL mode, large blobs beside it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qflow.exceptions import StoreError
from qflow.store.base import DISPATCH_FIELDS, NODE_FIELDS, ResultStore

#: Outputs larger than this go to a file beside the database.
BLOB_INLINE_LIMIT = 256 * 1024
_FILE_PREFIX = b"qflow-blob-file:"


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would commit the migration's transaction half-way.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE dispatches (
            dispatch_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
            parent_id TEXT, parent_node_id INTEGER, created_at TEXT NOT NULL,
            start_time TEXT, end_time TEXT, error TEXT,
            inputs BLOB, result BLOB, graph BLOB, graph_text TEXT
        );
        CREATE INDEX dispatches_created ON dispatches(created_at);
        CREATE TABLE nodes (
            dispatch_id TEXT NOT NULL REFERENCES dispatches(dispatch_id),
            node_id INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
            parents TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL,
            start_time TEXT, end_time TEXT, error TEXT, stdout TEXT, stderr TEXT,
            output BLOB, ray_node_id TEXT, sublattice_id TEXT,
            PRIMARY KEY (dispatch_id, node_id)
        );
        """
    )


#: Migration N brings a database from schema version N-1 to N. Append only.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1]
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore(ResultStore):
    """The embedded results store.

    Args:
        path: the database file, or ``":memory:"`` for a private in-memory store.

    Example:
        >>> import tempfile, pathlib
        >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()) / "qflow.db")
        >>> store.list_dispatches()
        []
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._memory = self.path == ":memory:"
        self._blob_dir = None if self._memory else Path(self.path).parent / "blobs"
        self._local = threading.local()
        self._shared: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._migrate()

    # -- connections: one per thread for a file, one shared for :memory:
    def _db(self) -> sqlite3.Connection:
        if self._memory:
            if self._shared is None:
                self._shared = sqlite3.connect(":memory:", check_same_thread=False)
                self._shared.row_factory = sqlite3.Row
            return self._shared
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StoreError(
                    f"Cannot open the results store at {self.path}: {exc}. Set QFLOW_HOME to a "
                    "writable folder."
                ) from exc
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def _write(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        def run(db: sqlite3.Connection) -> None:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The results store at {self.path} has schema version {version}, newer "
                    f"than this qflow understands ({SCHEMA_VERSION}). Upgrade qflow-runtime, "
                    "or point QFLOW_HOME elsewhere."
                )
            for migration in MIGRATIONS[version:]:
                migration(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        self._write(run)

    # -- blobs
    def _put_blob(self, dispatch_id: str, node_id: Any, blob: bytes | None) -> bytes | None:
        if blob is None or self._blob_dir is None or len(blob) <= BLOB_INLINE_LIMIT:
            return blob
        path = self._blob_dir / dispatch_id.replace("/", "_") / f"{node_id}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        return _FILE_PREFIX + str(path).encode()

    @staticmethod
    def _get_blob(value: bytes | None) -> bytes | None:
        if value is not None and value.startswith(_FILE_PREFIX):
            return Path(value[len(_FILE_PREFIX):].decode()).read_bytes()
        return value

    # -- interface
    def create_dispatch(self, dispatch: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> None:
        did = dispatch["dispatch_id"]
        drow = {k: dispatch.get(k) for k in DISPATCH_FIELDS}
        for k in ("inputs", "result", "graph"):
            drow[k] = self._put_blob(did, k, drow[k])
        nrows = []
        for n in nodes:
            row = {k: n.get(k) for k in NODE_FIELDS}
            row["dispatch_id"] = did
            row["parents"] = row["parents"] or "[]"
            row["output"] = self._put_blob(did, row["node_id"], row["output"])
            nrows.append(row)

        def run(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO dispatches ({', '.join(DISPATCH_FIELDS)}) "
                f"VALUES ({', '.join(':' + k for k in DISPATCH_FIELDS)})", drow)
            db.executemany(
                f"INSERT INTO nodes ({', '.join(NODE_FIELDS)}) "
                f"VALUES ({', '.join(':' + k for k in NODE_FIELDS)})", nrows)

        self._write(run)

    def update_dispatch(self, dispatch_id: str, **fields: Any) -> None:
        for k in ("inputs", "result", "graph"):
            if k in fields:
                fields[k] = self._put_blob(dispatch_id, k, fields[k])
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        self._write(lambda db: db.execute(
            f"UPDATE dispatches SET {sets} WHERE dispatch_id = :_id", {**fields, "_id": dispatch_id}))

    def update_nodes(self, dispatch_id: str, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        if not updates:
            return
        prepared = []
        for node_id, fields in updates:
            fields = dict(fields)
            if "output" in fields:
                fields["output"] = self._put_blob(dispatch_id, node_id, fields["output"])
            prepared.append((node_id, fields))

        def run(db: sqlite3.Connection) -> None:
            for node_id, fields in prepared:
                sets = ", ".join(f"{k} = :{k}" for k in fields)
                db.execute(
                    f"UPDATE nodes SET {sets} WHERE dispatch_id = :_d AND node_id = :_n",
                    {**fields, "_d": dispatch_id, "_n": node_id})

        self._write(run)

    def get_dispatch(self, dispatch_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db().execute(
                "SELECT * FROM dispatches WHERE dispatch_id = ?", (dispatch_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        for k in ("inputs", "result", "graph"):
            out[k] = self._get_blob(out[k])
        return out

    def get_nodes(self, dispatch_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db().execute(
                "SELECT * FROM nodes WHERE dispatch_id = ? ORDER BY node_id", (dispatch_id,)
            ).fetchall()
        out = []
        for row in rows:
            d = dict(row)
            d["output"] = self._get_blob(d["output"])
            out.append(d)
        return out

    def list_dispatches(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db().execute(
                "SELECT dispatch_id, name, status, created_at, start_time, end_time, error "
                "FROM dispatches WHERE parent_id IS NULL ORDER BY created_at DESC LIMIT ?",
                (limit,)).fetchall()
        return [dict(r) for r in rows]
