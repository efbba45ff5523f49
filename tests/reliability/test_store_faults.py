"""A damaged, misplaced or unreadable store gives a clear StoreError, never a raw
sqlite3 traceback, and never silently loses history. No Ray needed."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess

import pytest

from qflow.exceptions import QflowError, StoreError
from qflow.result import TransportableObject
from qflow.store.base import loads
from qflow.store.sqlite import BLOB_INLINE_LIMIT, SQLiteStore
from tests.reliability.helpers import QFLOW, env_for, run

BIG = b"x" * (BLOB_INLINE_LIMIT + 1)


def _dispatch(store: SQLiteStore, dispatch_id: str = "d1") -> None:
    store.create_dispatch(
        {
            "dispatch_id": dispatch_id,
            "name": "flow",
            "status": "COMPLETED",
            "created_at": "2026-01-01T00:00:00",
            "end_time": "2026-01-01T00:00:01",
        },
        [
            {"node_id": i, "name": f"n{i}", "kind": "electron", "status": "COMPLETED"}
            for i in range(2)
        ],
    )


def _cli_error(home, *args):
    out = run([*QFLOW, *args], env_for(home), timeout=120)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr and "sqlite3" not in out.stderr, out.stderr
    return out.stderr


class TestDamagedStore:
    def test_empty_file_is_refused_not_recreated(self, tmp_path):
        """A 0-byte DB (truncated) is an error naming the path, and is left as it was."""
        (tmp_path / "qflow.db").write_bytes(b"")
        with pytest.raises(StoreError, match=r"empty \(0 bytes\).*truncated") as err:
            SQLiteStore(tmp_path / "qflow.db")
        assert str(tmp_path / "qflow.db") in str(err.value)
        assert (tmp_path / "qflow.db").stat().st_size == 0

    def test_corrupt_file(self, tmp_path):
        (tmp_path / "qflow.db").write_bytes(b"this is not a database at all" * 100)
        with pytest.raises(StoreError, match="corrupt") as err:
            SQLiteStore(tmp_path / "qflow.db")
        assert "Move" in str(err.value) and str(tmp_path / "qflow.db") in str(err.value)

    def test_truncated_file(self, tmp_path):
        store = SQLiteStore(tmp_path / "qflow.db")
        for i in range(50):
            _dispatch(store, f"d{i}")
        del store
        path = tmp_path / "qflow.db"
        for side in ("-wal", "-shm"):
            (tmp_path / f"qflow.db{side}").unlink(missing_ok=True)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        with pytest.raises(StoreError):
            s = SQLiteStore(path)
            for i in range(50):
                s.get_dispatch(f"d{i}")
                s.get_nodes(f"d{i}")

    def test_home_is_a_file(self, tmp_path):
        home = tmp_path / "not-a-folder"
        home.write_text("x")
        with pytest.raises(StoreError, match="is a file, not a folder"):
            SQLiteStore(home / "qflow.db")

    def test_unwritable_parent(self):
        """(/proc refuses new folders even to root, so this holds for every user.)"""
        with pytest.raises(StoreError, match="Cannot create the qflow home /proc/qflow-home"):
            SQLiteStore("/proc/qflow-home/qflow.db")

    def test_read_only_database(self, tmp_path):
        """A store that cannot be written (here: SQLite opened read-only) says so."""
        store = SQLiteStore(tmp_path / "qflow.db")
        _dispatch(store)
        ro = SQLiteStore.__new__(SQLiteStore)
        ro.__dict__.update(store.__dict__)
        db = sqlite3.connect(
            f"file:{tmp_path / 'qflow.db'}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        db.row_factory = sqlite3.Row
        ro._shared = db
        with pytest.raises(StoreError, match="read-only"):
            ro.update_dispatch("d1", status="FAILED")

    def test_every_cli_command_reports_a_corrupt_store(self, tmp_path):
        """The CLI prints one clear line and exits 1; no sqlite3 traceback."""
        (tmp_path / "qflow.db").write_bytes(b"garbage" * 1000)
        for args in (["list"], ["show", "abc"], ["logs", "abc"], ["cancel", "abc"], ["status"]):
            err = _cli_error(tmp_path, *args)
            assert "corrupt" in err and str(tmp_path / "qflow.db") in err, (args, err)

    def test_cli_reports_home_that_is_a_file(self, tmp_path):
        home = tmp_path / "file"
        home.write_text("")
        err = _cli_error(home, "list")
        assert "is a file, not a folder" in err
        assert "Cannot create the qflow home" in _cli_error("/proc/qflow-home", "list")

    def test_qflow_error_is_the_root(self, tmp_path):
        (tmp_path / "qflow.db").write_bytes(b"")
        with pytest.raises(QflowError):
            SQLiteStore(tmp_path / "qflow.db")


class TestBlobs:
    def test_paths_are_relative_so_a_moved_home_reads(self, tmp_path):
        home = tmp_path / "a"
        store = SQLiteStore(home / "qflow.db")
        _dispatch(store)
        store.update_nodes("d1", [(0, {"output": BIG})])
        raw = (
            sqlite3.connect(home / "qflow.db")
            .execute("SELECT output FROM nodes WHERE node_id = 0")
            .fetchone()[0]
        )
        assert str(tmp_path).encode() not in raw
        moved = tmp_path / "b"
        home.rename(moved)
        assert SQLiteStore(moved / "qflow.db").get_nodes("d1")[0]["output"] == BIG

    def test_one_missing_blob_loses_one_value_only(self, tmp_path):
        store = SQLiteStore(tmp_path / "qflow.db")
        _dispatch(store)
        store.update_nodes("d1", [(0, {"output": BIG}), (1, {"output": b"small"})])
        for f in (tmp_path / "blobs").rglob("*.pkl"):
            f.unlink()
        assert store.get_dispatch("d1")["status"] == "COMPLETED"
        nodes = store.get_nodes("d1")
        assert nodes[1]["output"] == b"small"
        with pytest.raises(StoreError, match="cannot be read.*rest of the dispatch is intact"):
            loads(nodes[0]["output"])
        assert "unreadable" in repr(TransportableObject._stored(nodes[0]["output"]))

    def test_a_pointer_cannot_read_arbitrary_files(self, tmp_path):
        store = SQLiteStore(tmp_path / "qflow.db")
        _dispatch(store)
        secret = tmp_path / "secret.txt"
        secret.write_text("do not read")
        for target in (str(secret), "../secret.txt", "blobs/../../secret.txt"):
            db = sqlite3.connect(tmp_path / "qflow.db")
            db.execute(
                "UPDATE nodes SET output = ? WHERE node_id = 0",
                (b"qflow-blob-file:" + target.encode(),),
            )
            db.commit()
            db.close()
            out = store.get_nodes("d1")[0]["output"]
            with pytest.raises(StoreError, match="outside the store's blobs folder"):
                loads(out)


class TestPrivacy:
    def test_home_db_and_blobs_are_owner_only(self, tmp_path):
        home = tmp_path / "home"
        store = SQLiteStore(home / "qflow.db")
        _dispatch(store)
        store.update_nodes("d1", [(0, {"output": BIG})])
        store.get_nodes("d1")  # opens the WAL and SHM files
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        files = [p for p in home.rglob("*") if p.is_file()]
        assert any(p.suffix == ".pkl" for p in files)
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
        for d in (p for p in home.rglob("*") if p.is_dir()):
            assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0, d

    def test_existing_open_home_is_tightened(self, tmp_path):
        home = tmp_path / "home"
        home.mkdir(mode=0o755)
        home.chmod(0o755)
        SQLiteStore(home / "qflow.db")
        assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_concurrent_first_open_makes_one_store(tmp_path):
    """Processes opening a new home at once never see a half-made (0-byte) file."""
    import subprocess
    import sys

    code = (
        "import sys; from qflow.store.sqlite import SQLiteStore; "
        "s = SQLiteStore(sys.argv[1]); print(s.list_dispatches())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "qflow.db")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out.strip() == "[]", err
    assert not list(tmp_path.glob(".qflow.db.*"))


@contextlib.contextmanager
def _tmpfs(folder, options):
    """A tmpfs of its own mounted on ``folder`` (as root), unmounted afterwards; the
    test skips, saying why, where that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs of its own needs root")
    folder.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs of its own, so that filling it fills nothing else."""
    with _tmpfs(tmp_path / "dev", "size=8m") as dev:
        yield dev


def _fill(dev):
    """Write a file on ``dev`` until the device is full."""
    with open(dev / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


class TestFullDisk:
    def test_writes_say_free_space_reads_work_and_the_end_is_recorded(self, small_disk):
        from qflow.exceptions import StoreFullError

        home = small_disk / "home"
        store = SQLiteStore(home / "qflow.db")
        store.create_dispatch(
            {
                "dispatch_id": "run1",
                "name": "flow",
                "status": "RUNNING",
                "created_at": "2026-01-01T00:00:00",
            },
            [{"node_id": 0, "name": "n0", "kind": "electron", "status": "RUNNING"}],
        )
        store._shared.close()
        assert (home / ".space-reserve").stat().st_size > 0
        _fill(small_disk)

        reader = SQLiteStore(home / "qflow.db")  # opening and reading need no space
        assert [r["dispatch_id"] for r in reader.list_dispatches()] == ["run1"]
        with pytest.raises(StoreFullError) as err:
            reader.update_nodes("run1", [(0, {"status": "COMPLETED", "output": BIG})])
        text = str(err.value)
        assert f"No space left on the device holding {home}" in text
        assert "Move" not in text and "aside" not in text
        # The reserve is given up to record why the dispatch ended.
        assert reader.end_dispatch("run1", "FAILED", text)
        row = reader.get_status("run1")
        assert row["status"] == "FAILED" and "No space left" in reader.get_dispatch("run1")["error"]

        out = run([*QFLOW, "list"], env_for(home), timeout=120)
        assert out.returncode == 0 and "run1" in out.stdout, out

    def test_a_dispatch_that_fills_the_disk_ends_failed_with_the_reason(
        self, small_disk, monkeypatch
    ):
        import os

        import qflow

        home = small_disk / "home"
        monkeypatch.setenv("QFLOW_HOME", str(home))

        @qflow.electron
        def noise(i):
            return os.urandom(400_000)  # incompressible, stored as a blob file

        @qflow.lattice
        def flow(n):
            return [noise(i) for i in range(n)]

        dispatch_id = qflow.dispatch(flow)(40)  # 16 MB of outputs on an 8 MiB disk
        res = qflow.get_result(dispatch_id, wait=True, timeout=120)
        assert res.status == "FAILED"
        assert f"No space left on the device holding {home}" in res.error
        assert SQLiteStore(home / "qflow.db").get_status(dispatch_id)["status"] == "FAILED"


def test_a_home_on_a_read_only_filesystem_is_not_said_to_be_created(tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        with pytest.raises(StoreError) as err:
            SQLiteStore(ro / "qflow.db")
    text = str(err.value)
    assert "Cannot create the qflow home" not in text and str(ro) in text
    assert "Read-only file system" in text or "readonly" in text, text
