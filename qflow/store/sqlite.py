"""SQLite results store: one file under ``$QFLOW_HOME``, WAL mode, large blobs beside it."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from qflow.exceptions import StoreError, StoreFullError
from qflow.store.base import (
    DISPATCH_FIELDS,
    FINAL_STATUSES,
    NODE_FIELDS,
    STATUS_FIELDS,
    BlobFile,
    DispatchPage,
    DispatchQuery,
    MetricPoint,
    ResultStore,
    ToPickle,
    UnreadableBlob,
    now_iso,
)

#: Outputs larger than this go to a file beside the database.
BLOB_INLINE_LIMIT = 256 * 1024
_FILE_PREFIX = b"qflow-blob-file:"
#: A file of this many bytes is kept in the home and given up when the disk is full, so
#: that a dispatch that hit the full disk can still be recorded as FAILED, saying why.
RESERVE_BYTES = 1024 * 1024
RESERVE_NAME = ".space-reserve"
#: Below this many free bytes, SQLite's vaguer I/O errors are taken for a full disk.
_NEARLY_FULL = 4 * 1024 * 1024


def _like_escaped(text: str) -> str:
    """``text`` matched literally by ``LIKE ... ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
        """,
    )


def _v2(db: sqlite3.Connection) -> None:
    # The owner of a running dispatch (host, pid, process start time) and its last sign
    # of life, so that any reader can tell a dispatch nothing is running any more.
    _run_script(
        db,
        """
        ALTER TABLE dispatches ADD COLUMN owner TEXT;
        ALTER TABLE dispatches ADD COLUMN heartbeat REAL;
        CREATE INDEX dispatches_status ON dispatches(status)
    """,
    )


def _v3(db: sqlite3.Connection) -> None:
    # Text forms written when values are recorded, so that readers such as the web UI
    # show outputs without ever unpickling stored data; the lattice's source; and an
    # index for listing top-level dispatches newest first.
    _run_script(
        db,
        """
        ALTER TABLE nodes ADD COLUMN output_text TEXT;
        ALTER TABLE dispatches ADD COLUMN result_text TEXT;
        ALTER TABLE dispatches ADD COLUMN inputs_text TEXT;
        ALTER TABLE dispatches ADD COLUMN source TEXT;
        CREATE INDEX dispatches_top ON dispatches(parent_id, created_at)
    """,
    )


def _v4(db: sqlite3.Connection) -> None:
    # The source of each electron function of a dispatch, by name, as JSON: readers
    # show it beside a node without unpickling the function.
    _run_script(db, "ALTER TABLE dispatches ADD COLUMN electron_sources TEXT")


def _v5(db: sqlite3.Connection) -> None:
    # A lattice's tags, as a JSON list, searched by the dispatch list.
    _run_script(db, "ALTER TABLE dispatches ADD COLUMN tags TEXT")


def _add_missing_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _v6(db: sqlite3.Connection) -> None:
    # Where each node ran and what it was called with, and the metrics table. Some
    # development builds put part of this in version 3, so add only what is missing.
    _add_missing_columns(
        db, "nodes", {"executor": "TEXT", "slurm_job_id": "TEXT", "inputs_text": "TEXT"}
    )
    _run_script(
        db,
        """
        CREATE TABLE IF NOT EXISTS metrics (
            dispatch_id TEXT NOT NULL, node_id INTEGER, name TEXT NOT NULL,
            step REAL, value REAL, time REAL
        );
        CREATE INDEX IF NOT EXISTS metrics_dispatch ON metrics(dispatch_id, name, step)
    """,
    )


def _v7(db: sqlite3.Connection) -> None:
    # A metric value's standard error and how to chart it; the host a node ran on.
    _add_missing_columns(db, "metrics", {"error": "REAL", "meta": "TEXT"})
    _add_missing_columns(db, "nodes", {"host": "TEXT"})


#: Migration N brings a database from schema version N-1 to N. Append only: a released
#: migration is never edited (a store that ran it would not run it again).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
SCHEMA_VERSION = len(MIGRATIONS)


class _Spill:
    """A file-like that a pickler writes into: in memory up to ``limit`` bytes, then
    into a temporary file in ``folder`` (None: memory only), hashing as it goes."""

    def __init__(self, folder: Path | None, limit: int) -> None:
        self.folder, self.limit = folder, limit
        self.memory = bytearray()
        self.tmp: Path | None = None
        self._file: Any = None
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.digest.update(data)
        self.size += n
        if self._file is None:
            if self.folder is None or self.size <= self.limit:
                self.memory += data
                return n
            private_mkdir(self.folder)
            self.tmp = self.folder / f".spill.{uuid.uuid4().hex}.tmp"
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._file = os.fdopen(fd, "wb")
            self._file.write(self.memory)
            self.memory = bytearray()
        self._file.write(data)
        return n

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        self.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def _keep_file(blob_dir: Path, digest: str, size: int, tmp: Path) -> bytes:
    """Move the written ``tmp`` to its content name in ``blob_dir`` (or drop it, when
    that file is already there); the row's pointer to it."""
    rel = Path(blob_dir.name) / digest[:2] / f"{digest}.pkl"
    path = blob_dir.parent / rel
    if path.exists() and path.stat().st_size == size:
        tmp.unlink(missing_ok=True)
    else:
        private_mkdir(path.parent)
        os.replace(tmp, path)  # readers never see a half-written file
    return _FILE_PREFIX + rel.as_posix().encode()


def private_mkdir(path: Path) -> None:
    """Create ``path`` and any missing parents, each readable by its owner only."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process made it just now
            pass


class SQLiteStore(ResultStore):
    """The embedded results store.

    Args:
        path: the database file, or ``":memory:"`` for a private in-memory store.
        lazy_blobs: read values kept in files as :class:`~qflow.store.base.BlobFile`
            (read when used) instead of bytes; a server streams them so.

    Example:
        >>> import tempfile, pathlib
        >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()) / "qflow.db")
        >>> store.list_dispatches()
        []
    """

    def __init__(self, path: str | Path, *, lazy_blobs: bool = False) -> None:
        self.path = str(path)
        self.lazy_blobs = lazy_blobs
        self._memory = self.path == ":memory:"
        self._home: Path | None = None if self._memory else Path(self.path).parent
        self._blob_dir: Path | None = None if self._memory else Path(self.path).parent / "blobs"
        self._shared: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.RLock()
        if not self._memory:
            self._prepare_file()
        self._migrate()

    # -- opening
    def _advice(self) -> str:
        return (
            f"Move {self.path} aside (qflow then starts a new, empty store there) or "
            "point QFLOW_HOME at another folder."
        )

    def _prepare_file(self) -> None:
        """Check the home and the database file; create both, owner-only, when missing.

        A new database is built under a temporary name and linked into place, so another
        process never sees it half made, and a 0-byte file is always damage, never "new".
        """
        path = Path(self.path)
        home = path.parent
        if home.exists() and not home.is_dir():
            raise StoreError(
                f"QFLOW_HOME {home} is a file, not a folder. Point QFLOW_HOME "
                "at a folder (it is created if missing)."
            )
        existed = home.exists()
        try:
            private_mkdir(home)
            if home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077:
                home.chmod(0o700)  # inputs and outputs can hold secrets
        except OSError as exc:
            what = "use" if existed else "create"
            raise StoreError(
                f"Cannot {what} the qflow home {home}: {exc.strerror or exc}. "
                "Set QFLOW_HOME to a folder you can write."
            ) from exc
        self._keep_reserve()
        if path.exists():
            if path.is_dir():
                raise StoreError(
                    f"The results store {path} is a folder, not a file. " + self._advice()
                )
            if path.stat().st_size == 0:
                raise StoreError(
                    f"The results store {path} is empty (0 bytes): it was truncated, so its "
                    "history is gone. " + self._advice()
                )
            return
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            with contextlib.closing(db):
                os.chmod(tmp, 0o600)
                db.execute("PRAGMA journal_mode=WAL")
                self._apply_migrations(db)
            try:
                os.link(tmp, path)
            except FileExistsError:  # another process made it first: use theirs
                pass
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"Cannot create the results store {path}: {exc}. Set QFLOW_HOME "
                "to a folder you can write."
            ) from exc
        finally:
            for leftover in (
                tmp,
                tmp.with_name(tmp.name + "-wal"),
                tmp.with_name(tmp.name + "-shm"),
            ):
                leftover.unlink(missing_ok=True)

    # -- a full disk: say so, keep reads working, keep room to record a failure
    def _reserve_path(self) -> Path | None:
        return None if self._home is None else self._home / RESERVE_NAME

    def _keep_reserve(self) -> None:
        """Make the reserve file if it is missing and there is room (best effort)."""
        path = self._reserve_path()
        if path is None or path.exists():
            return
        tmp = path.with_name(f"{RESERVE_NAME}.{uuid.uuid4().hex}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)  # real blocks, not a sparse file
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:  # no room, or no fallocate here: try again on the next open
            tmp.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        """Give the reserve's space back to the disk; False if there was none."""
        path = self._reserve_path()
        if path is None or not path.exists():
            return False
        path.unlink(missing_ok=True)
        return True

    def _free_bytes(self) -> int | None:
        if self._home is None:
            return None
        try:
            st = os.statvfs(self._home)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _is_full(self, exc: BaseException) -> bool:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "disk is full" in text:  # SQLITE_FULL
            return True
        free = self._free_bytes()
        return "disk I/O error" in text and free is not None and free < _NEARLY_FULL

    def _full_error(self) -> StoreFullError:
        free = self._free_bytes()
        left = "" if free is None else f" ({free:,} bytes free)"
        return StoreFullError(
            f"No space left on the device holding {self._home}{left}: free space there, or "
            "move QFLOW_HOME to a device with room. The results store itself is intact; "
            "reading it still works."
        )

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn sqlite3's errors into a StoreError that names the file and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if self._is_full(exc):
                raise self._full_error() from exc
            text = str(exc)
            if "not a database" in text or "malformed" in text:
                why = "is corrupt (not a SQLite database any more)"
            elif "readonly" in text or "read-only" in text:
                why = "is read-only for this user"
                raise StoreError(
                    f"The results store {self.path} {why} ({text}). Make it and "
                    "its folder writable, or point QFLOW_HOME elsewhere."
                ) from exc
            elif "locked" in text:
                raise StoreError(
                    f"The results store {self.path} stayed locked by another "
                    f"process for over a minute ({text}). Try again."
                ) from exc
            elif "unable to open" in text:
                why = f"cannot be opened ({text})"
            else:  # the store is fine; this one operation was refused
                raise StoreError(
                    f"The results store {self.path} refused an operation: {text}."
                ) from exc
            raise StoreError(f"The results store {self.path} {why}. " + self._advice()) from exc

    # -- one connection per store: every use holds self._lock anyway, so more would add
    # file descriptors and shared-memory maps, not concurrency. (Other processes have
    # their own; SQLite's WAL locking serialises writers across them.)
    def _db(self) -> sqlite3.Connection:
        if self._shared is None or self._pid != os.getpid():
            with self._translated():
                if self._memory:
                    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                else:
                    db = sqlite3.connect(
                        self.path, timeout=60, isolation_level=None, check_same_thread=False
                    )
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._shared, self._pid = db, os.getpid()
        return self._shared

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock, self._translated():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return out

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                with self._translated():
                    return self._db().execute(sql, params).fetchall()
            except StoreFullError:
                with self._translated(), contextlib.closing(self._read_only_db()) as db:
                    return db.execute(sql, params).fetchall()

    def _read_only_db(self) -> sqlite3.Connection:
        """A connection that writes nothing, for reading while the disk is full.

        Opening the usual one makes SQLite create its shared-memory file, which a full
        disk refuses. Without a write-ahead log to replay, the file is read as it
        stands (``immutable``); with one, through the shared memory of the connection
        that wrote it.
        """
        wal = Path(self.path + "-wal")
        has_log = wal.exists() and wal.stat().st_size > 0
        uri = Path(self.path).absolute().as_uri() + ("?mode=ro" if has_log else "?immutable=1")
        db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        db.row_factory = sqlite3.Row
        return db

    def _apply_migrations(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The results store at {self.path} has schema version {version}, newer "
                f"than this qflow understands ({SCHEMA_VERSION}). Upgrade qflow-runtime, "
                "or point QFLOW_HOME elsewhere."
            )
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for migration in MIGRATIONS[version:]:
                migration(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _migrate(self) -> None:
        try:
            with self._lock, self._translated():
                self._apply_migrations(self._db())
        except StoreFullError:
            # Reads still work on a full disk: open, unless the store needs migrating.
            version = self._read("PRAGMA user_version")[0][0]
            if version != SCHEMA_VERSION:
                raise

    # -- blobs: files are named relative to the home, so a moved home still reads
    def _put_blob(self, blob: bytes | ToPickle | None) -> bytes | None:
        """The value to store in a row for ``blob``: itself, or a pointer to its file.

        A :class:`ToPickle` is pickled here, straight into its file when it is big.
        Called only inside a write transaction, as :meth:`sweep_blobs` runs inside one:
        SQLite's write lock then keeps a sweep from running between a file's writing (or
        finding it already there) and the commit of the row that points at it.
        """
        if isinstance(blob, ToPickle):
            spill = _Spill(self._blob_dir, BLOB_INLINE_LIMIT)
            try:
                blob.dump(spill)
                spill.close()
                if spill.tmp is None or self._blob_dir is None:
                    return bytes(spill.memory)
                return _keep_file(self._blob_dir, spill.digest.hexdigest(), spill.size, spill.tmp)
            except OSError as exc:
                raise self._write_error(exc, spill.tmp or self._blob_dir) from exc
            finally:
                spill.discard()  # a kept file was moved away first
        if blob is None or self._blob_dir is None or len(blob) <= BLOB_INLINE_LIMIT:
            return blob
        # Named by content: a value passed on unchanged, or reused by a redispatch, is
        # one file however many nodes hold it.
        digest = hashlib.sha256(blob).hexdigest()
        tmp = self._blob_dir / f".{digest}.{uuid.uuid4().hex}.tmp"
        try:
            private_mkdir(self._blob_dir)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            return _keep_file(self._blob_dir, digest, len(blob), tmp)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._write_error(exc, tmp) from exc

    def _write_error(self, exc: OSError, path: Path | None) -> StoreError:
        if self._is_full(exc):
            return self._full_error()
        return StoreError(
            f"Cannot write {path}: {exc.strerror or exc}. Fix permissions "
            "under QFLOW_HOME, or point it elsewhere."
        )

    def _get_blob(self, value: bytes | None) -> bytes | BlobFile | UnreadableBlob | None:
        if value is None or not value.startswith(_FILE_PREFIX) or self._blob_dir is None:
            return value
        name = value[len(_FILE_PREFIX) :].decode(errors="replace")
        found = self.blob_file(name)
        if isinstance(found, UnreadableBlob) or not self.lazy_blobs:
            return found if isinstance(found, UnreadableBlob) else self._read_file(found)
        return found

    @staticmethod
    def _read_file(blob: BlobFile) -> bytes | UnreadableBlob:
        try:
            return Path(blob.path).read_bytes()
        except OSError as exc:
            return UnreadableBlob(blob.path, f"{exc.strerror or exc}")

    def with_lazy_blobs(self) -> SQLiteStore:
        if self._memory or self.lazy_blobs:
            return self
        return SQLiteStore(self.path, lazy_blobs=True)

    def blob_file(self, name: str) -> BlobFile | UnreadableBlob:
        """The blob file ``name`` (``blobs/ab/ab12....pkl``), checked to lie in the
        store's blobs folder and to exist."""
        if self._blob_dir is None:
            return UnreadableBlob(name, "this store is in memory and keeps no files")
        path = (self._blob_dir.parent / name).resolve()
        if not path.is_relative_to(self._blob_dir.resolve()):
            return UnreadableBlob(
                name, "it points outside the store's blobs folder, so it is not read"
            )
        try:
            return BlobFile(name, str(path), path.stat().st_size)
        except OSError as exc:
            return UnreadableBlob(str(path), f"{exc.strerror or exc}")

    # -- interface
    def create_dispatch(self, dispatch: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> None:
        did = dispatch["dispatch_id"]
        drow = {k: dispatch.get(k) for k in DISPATCH_FIELDS}
        # Rows are grouped by the columns they set, and each group bound by position:
        # binding only the set columns costs SQLite a third of binding all of them.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        unknown = {k for n in nodes for k in n} - set(NODE_FIELDS)
        if unknown:
            raise StoreError(f"Node rows have no columns {sorted(unknown)}.")
        for n in nodes:
            row = dict(n)
            row["parents"] = row.get("parents") or "[]"
            groups.setdefault(tuple(row), []).append(row)

        def run(db: sqlite3.Connection) -> None:
            # Blob files are written inside the transaction: see _put_blob.
            for k in ("inputs", "result", "graph"):
                drow[k] = self._put_blob(drow[k])
            db.execute(
                f"INSERT INTO dispatches ({', '.join(DISPATCH_FIELDS)}) "
                f"VALUES ({', '.join(':' + k for k in DISPATCH_FIELDS)})",
                drow,
            )
            for cols, rows in groups.items():
                if "output" in cols:
                    for row in rows:
                        row["output"] = self._put_blob(row["output"])
                db.executemany(
                    f"INSERT INTO nodes (dispatch_id, {', '.join(cols)}) "
                    f"VALUES ({', '.join('?' * (len(cols) + 1))})",
                    [(did, *row.values()) for row in rows],
                )

        self._write(run)

    def update_dispatch(
        self, dispatch_id: str, *, only_if_unfinished: bool = False, **fields: Any
    ) -> bool:
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        where = " AND end_time IS NULL" if only_if_unfinished else ""

        def run(db: sqlite3.Connection) -> bool:
            for k in ("inputs", "result", "graph"):
                if k in fields:
                    fields[k] = self._put_blob(fields[k])
            return bool(
                db.execute(
                    f"UPDATE dispatches SET {sets} WHERE dispatch_id = :_id{where}",
                    {**fields, "_id": dispatch_id},
                ).rowcount
            )

        return bool(self._write(run))

    def end_dispatch(self, dispatch_id: str, status: str, error: str | None) -> bool:
        final = tuple(FINAL_STATUSES)
        now = now_iso()

        def run(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                "UPDATE dispatches SET status = ?, error = COALESCE(error, ?), end_time = ? "
                "WHERE dispatch_id = ? AND end_time IS NULL",
                (status, error, now, dispatch_id),
            ).rowcount
            if changed:
                db.execute(
                    f"UPDATE nodes SET status = 'CANCELLED', end_time = COALESCE(end_time, ?) "
                    f"WHERE dispatch_id = ? AND status NOT IN ({', '.join('?' * len(final))})",
                    (now, dispatch_id, *final),
                )
            return bool(changed)

        try:
            return self._write(run)
        except StoreFullError:
            # Recording why a dispatch ended is worth the reserve: the user would
            # otherwise find it RUNNING with nothing running it.
            if not self._release_reserve():
                raise
            return self._write(run)

    def claim(self, dispatch_ids: Sequence[str], owner: str, heartbeat: float) -> None:
        if not dispatch_ids:
            return
        self._write(
            lambda db: db.executemany(
                "UPDATE dispatches SET owner = ?, heartbeat = ? WHERE dispatch_id = ?",
                [(owner, heartbeat, d) for d in dispatch_ids],
            )
        )

    def update_nodes(self, dispatch_id: str, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        if not updates:
            return
        # Consecutive updates of the same columns go in one statement (a completion
        # batch updates the same columns of thousands of nodes); order is kept, since a
        # node may change twice in one batch. A status-only run also shares its status
        # value, so that it is one UPDATE of many nodes (a fan-out's submissions).
        runs: list[tuple[tuple[Any, ...], list[tuple[int, dict[str, Any]]]]] = []
        for node_id, fields in updates:
            keys = tuple(fields)
            run_key = (keys, fields["status"]) if keys == ("status",) else (keys, None)
            if not runs or runs[-1][0] != run_key:
                runs.append((run_key, []))
            runs[-1][1].append((node_id, fields))

        def run(db: sqlite3.Connection) -> None:
            for (keys, status), rows in runs:
                if status is not None:
                    db.execute(
                        "UPDATE nodes SET status = ? WHERE dispatch_id = ? AND node_id "
                        "IN (SELECT value FROM json_each(?))",
                        (status, dispatch_id, json.dumps([n for n, _ in rows])),
                    )
                    continue
                if "output" in keys:  # written inside the transaction: see _put_blob
                    rows = [(n, {**f, "output": self._put_blob(f["output"])}) for n, f in rows]
                sets = ", ".join(f"{k} = ?" for k in keys)
                db.executemany(
                    f"UPDATE nodes SET {sets} WHERE dispatch_id = ? AND node_id = ?",
                    [(*f.values(), dispatch_id, n) for n, f in rows],
                )

        self._write(run)

    def get_dispatch(self, dispatch_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM dispatches WHERE dispatch_id = ?", (dispatch_id,))
        if not rows:
            return None
        out = dict(rows[0])
        for k in ("inputs", "result", "graph"):
            out[k] = self._get_blob(out[k])
        return out

    def get_status(self, dispatch_id: str) -> dict[str, Any] | None:
        rows = self._read(
            f"SELECT {', '.join(STATUS_FIELDS)} FROM dispatches WHERE dispatch_id = ?",
            (dispatch_id,),
        )
        return dict(rows[0]) if rows else None

    def get_nodes(self, dispatch_id: str) -> list[dict[str, Any]]:
        out = []
        for row in self._read(
            "SELECT * FROM nodes WHERE dispatch_id = ? ORDER BY node_id", (dispatch_id,)
        ):
            d = dict(row)
            d["output"] = self._get_blob(d["output"])
            out.append(d)
        return out

    def search_dispatches(self, query: DispatchQuery) -> DispatchPage:
        where, params = ["parent_id IS NULL"], []
        if query.text:
            where.append(
                "(name LIKE ? ESCAPE '\\' OR dispatch_id LIKE ? ESCAPE '\\' "
                "OR tags LIKE ? ESCAPE '\\')"
            )
            like = _like_escaped(query.text)
            params += [f"%{like}%", f"{like}%", f"%{like}%"]
        counts = {
            r[0]: r[1]
            for r in self._read(
                f"SELECT status, count(*) FROM dispatches WHERE {' AND '.join(where)} "
                "GROUP BY status",
                params,
            )
        }
        if query.status:
            where.append("status = ?")
            params.append(query.status)
        order = "DESC" if query.descending else "ASC"
        rows = [
            dict(r)
            for r in self._read(
                f"SELECT {', '.join(STATUS_FIELDS)} FROM dispatches WHERE {' AND '.join(where)} "
                f"ORDER BY {query.sort.value} {order}, dispatch_id {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            )
        ]
        if rows:
            marks = ", ".join("?" * len(rows))
            progress = {
                r[0]: (r[1], r[2], r[3])
                for r in self._read(
                    "SELECT dispatch_id, count(*), sum(status = 'COMPLETED'), "
                    "sum(status = 'FAILED') FROM nodes "
                    f"WHERE dispatch_id IN ({marks}) AND kind != 'parameter' GROUP BY dispatch_id",
                    [r["dispatch_id"] for r in rows],
                )
            }
            for r in rows:
                r["nodes_total"], r["nodes_done"], r["nodes_failed"] = progress.get(
                    r["dispatch_id"], (0, 0, 0)
                )
        total = counts.get(query.status, 0) if query.status else sum(counts.values())
        return DispatchPage(rows=rows, total=total, counts=counts)

    def add_metrics(self, dispatch_id: str, rows: Sequence[MetricPoint]) -> None:
        if not rows:
            return
        self._write(
            lambda db: db.executemany(
                "INSERT INTO metrics (dispatch_id, node_id, name, step, value, time, error, "
                "meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (dispatch_id, r.node_id, r.name, r.step, r.value, r.time, r.error, r.meta)
                    for r in rows
                ],
            )
        )

    def get_metrics(self, dispatch_ids: Sequence[str]) -> dict[str, list[MetricPoint]]:
        out: dict[str, list[MetricPoint]] = {d: [] for d in dispatch_ids}
        for chunk in range(0, len(dispatch_ids), 500):
            ids = list(dispatch_ids[chunk : chunk + 500])
            for r in self._read(
                "SELECT dispatch_id, node_id, name, step, value, time, error, meta FROM metrics "
                f"WHERE dispatch_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY rowid",
                ids,
            ):
                out[r[0]].append(
                    MetricPoint(
                        node_id=r[1],
                        name=r[2],
                        step=r[3],
                        value=r[4],
                        time=r[5],
                        error=r[6],
                        meta=r[7],
                    )
                )
        return out

    def get_node_texts(self, dispatch_id: str) -> list[dict[str, Any]]:
        fields = [f for f in NODE_FIELDS if f != "output"]
        return [
            dict(r)
            for r in self._read(
                f"SELECT {', '.join(fields)} FROM nodes WHERE dispatch_id = ? ORDER BY node_id",
                (dispatch_id,),
            )
        ]

    def note_progress(self, dispatch_id: str, node_id: int, **fields: Any) -> bool:
        """Record that a node has started (``start_time``, ``ray_node_id``,
        ``inputs_text``) and what it printed so far (``stdout``, ``stderr``), only while
        its row still says RUNNING: a finished node's record is never overwritten."""
        allowed = {"start_time", "ray_node_id", "host", "inputs_text", "stdout", "stderr"}
        if not fields or not set(fields) <= allowed:
            raise StoreError(f"note_progress sets {sorted(allowed)}; got {sorted(fields)}.")
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        return bool(
            self._write(
                lambda db: (
                    db.execute(
                        f"UPDATE nodes SET {sets} WHERE dispatch_id = :_d AND node_id = :_n "
                        "AND status = 'RUNNING'",
                        {**fields, "_d": dispatch_id, "_n": node_id},
                    ).rowcount
                )
            )
        )

    def get_node_states(self, dispatch_id: str) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in self._read(
                "SELECT node_id, status, start_time, end_time, ray_node_id, slurm_job_id, "
                "sublattice_id, host FROM nodes WHERE dispatch_id = ? AND kind != 'parameter' "
                "ORDER BY node_id",
                (dispatch_id,),
            )
        ]

    def children(self, dispatch_id: str) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self._read(
                f"SELECT {', '.join(STATUS_FIELDS)}, parent_node_id FROM dispatches "
                "WHERE parent_id = ? ORDER BY parent_node_id",
                (dispatch_id,),
            )
        ]

    def change_marker(self) -> Any:
        # data_version moves on commits by other connections; total_changes() on this
        # process's own (one per store per process), so together they see every write.
        def run(db: sqlite3.Connection) -> Any:
            return (db.execute("PRAGMA data_version").fetchone()[0], db.total_changes)

        with self._lock, self._translated():
            return run(self._db())

    def match_ids(self, prefix: str, limit: int = 5) -> list[str]:
        rows = self._read(
            "SELECT dispatch_id FROM dispatches WHERE parent_id IS NULL AND dispatch_id "
            "LIKE ? ESCAPE '\\' ORDER BY dispatch_id LIMIT ?",
            (_like_escaped(prefix) + "%", limit),
        )
        return [r[0] for r in rows]

    def list_dispatches(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._read(
            f"SELECT {', '.join(STATUS_FIELDS)} FROM dispatches WHERE parent_id IS NULL "
            "ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

    def delete_dispatches(self, dispatch_ids: Sequence[str]) -> int:
        def run(db: sqlite3.Connection) -> int:
            n = 0
            for d in dispatch_ids:
                like = _like_escaped(d) + "/%"
                where = "dispatch_id = ? OR dispatch_id LIKE ? ESCAPE '\\'"
                db.execute(f"DELETE FROM nodes WHERE {where}", (d, like))
                db.execute(f"DELETE FROM metrics WHERE {where}", (d, like))
                n += db.execute(f"DELETE FROM dispatches WHERE {where}", (d, like)).rowcount
            return n

        deleted = self._write(run)
        self.sweep_blobs()
        return deleted

    def finished_before(self, iso_time: str) -> list[str]:
        rows = self._read(
            "SELECT dispatch_id FROM dispatches WHERE parent_id IS NULL AND "
            "end_time IS NOT NULL AND end_time < ?",
            (iso_time,),
        )
        return [r["dispatch_id"] for r in rows]

    def sweep_blobs(self) -> int:
        """Delete blob files no row points at; return the bytes freed.

        It holds the database's write lock throughout, so a file that a writer has just
        written, or found already there, is never swept before the writer's row
        pointing at it commits (writers put files inside their transaction).
        """
        if self._blob_dir is None or not self._blob_dir.exists():
            return 0
        return int(self._write(self._sweep))

    def _sweep(self, db: sqlite3.Connection) -> int:
        if self._blob_dir is None or self._home is None:  # in memory: no files
            return 0
        prefix = _FILE_PREFIX
        used = set()
        for sql in (
            "SELECT output AS b FROM nodes WHERE substr(output, 1, ?) = ?",
            "SELECT inputs AS b FROM dispatches WHERE substr(inputs, 1, ?) = ?",
            "SELECT result AS b FROM dispatches WHERE substr(result, 1, ?) = ?",
            "SELECT graph AS b FROM dispatches WHERE substr(graph, 1, ?) = ?",
        ):
            for row in db.execute(sql, (len(prefix), prefix)):
                used.add((self._home / row["b"][len(prefix) :].decode()).resolve())
        freed = 0
        for path in self._blob_dir.rglob("*"):
            if path.is_file() and path.resolve() not in used and not path.name.endswith(".tmp"):
                size = path.stat().st_size
                path.unlink(missing_ok=True)
                freed += size
        for folder in sorted((p for p in self._blob_dir.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only empty ones go
        return freed

    def size_bytes(self) -> int:
        if self._home is None:
            return 0
        files = [Path(self.path), Path(self.path + "-wal"), Path(self.path + "-shm")]
        if self._blob_dir is not None and self._blob_dir.exists():
            files += [p for p in self._blob_dir.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files if p.exists())

    def unfinished(self) -> list[dict[str, Any]]:
        rows = self._read(
            f"SELECT {', '.join(STATUS_FIELDS)} FROM dispatches WHERE end_time IS NULL"
        )
        return [dict(r) for r in rows]
