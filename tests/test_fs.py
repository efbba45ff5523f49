"""File transfers around electrons (Covalent's ct.fs), with real copies: shutil and rsync
to a directory. Cloud stores cannot exist here; their errors without credentials are
checked instead."""

import subprocess
import sys
from pathlib import Path

import pytest

import qflow as ct
from qflow.exceptions import QflowInputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rsync():
    """rsync installed by the project's own script (apt-get, as root)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensure_debian.py"), "rsync"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, f"rsync is needed for these tests: {out.stderr}"
    return out.stdout.strip()


@pytest.mark.parametrize("order", [ct.fs.Order.BEFORE, ct.fs.Order.AFTER])
def test_local_transfer_before_or_after(tmp_path, rsync, order):
    source, dest = tmp_path / "source.txt", tmp_path / "dest.txt"
    source.write_text("hello")

    @ct.electron(files=[ct.fs.FileTransfer(str(source), str(dest), order=order)])
    def task(files=[]):  # noqa: B006 (as Covalent's guide writes it)
        return Path(dest).exists()

    @ct.lattice
    def workflow():
        return task()

    res = ct.dispatch_sync(workflow)()
    assert res.status == "COMPLETED", res.error
    assert dest.read_text() == "hello"
    assert res.result is (order == ct.fs.Order.BEFORE)  # AFTER copies once it has run


def test_files_receives_the_from_to_pairs(tmp_path, rsync):
    pairs = []
    for i in range(2):
        (tmp_path / f"s{i}").write_text(str(i))
        pairs.append(ct.fs.FileTransfer(str(tmp_path / f"s{i}"), str(tmp_path / "out" / f"d{i}")))

    @ct.electron(files=pairs)
    def task(files=[]):  # noqa: B006 (as Covalent's guide writes it)
        return [(a, b, Path(b).read_text()) for a, b in files]

    @ct.electron(files=pairs[:1])
    def no_files_argument():  # not given files: it does not ask for them
        return "ran"

    @ct.lattice
    def workflow():
        return task(), no_files_argument()

    res = ct.dispatch_sync(workflow)()
    assert res.result == (
        [(str(tmp_path / f"s{i}"), str(tmp_path / "out" / f"d{i}"), str(i)) for i in range(2)],
        "ran",
    ), res.error


def test_rsync_a_folder_and_shutil(tmp_path, rsync):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a")
    (tmp_path / "one.txt").write_text("1")
    to_dir = ct.fs.FileTransfer(
        ct.fs.Folder(str(src)), str(tmp_path / "copy"), strategy=ct.fs_strategies.Rsync()
    )
    with_shutil = ct.fs.FileTransfer(
        str(tmp_path / "one.txt"), str(tmp_path / "two.txt"), strategy=ct.fs_strategies.Shutil()
    )

    @ct.electron(files=[to_dir, with_shutil])
    def task():
        return sorted(p.name for p in (tmp_path / "copy").rglob("*"))

    @ct.lattice
    def workflow():
        return task()

    res = ct.dispatch_sync(workflow)()
    assert res.result == ["a.txt", "sub"], res.error
    assert (tmp_path / "two.txt").read_text() == "1"


def test_transfer_from_remote_over_ssh_builds_the_command():
    # No SSH server here: the command line is checked, not run.
    ft = ct.fs.TransferFromRemote(
        "/data/in.csv",
        "/scratch/in.csv",
        strategy=ct.fs_strategies.Rsync(user="me", host="hpc", private_key_path="~/.ssh/k"),
    )
    assert ft.order == ct.fs.Order.BEFORE and ft.from_file.is_remote
    assert ft.strategy.command(ft.strategy.remote("/data/in.csv"), "/scratch/in.csv") == [
        "rsync",
        "-a",
        "-e",
        "ssh -o BatchMode=yes -i ~/.ssh/k",
        "me@hpc:/data/in.csv",
        "/scratch/in.csv",
    ]
    up = ct.fs.TransferToRemote("/remote/out", "/local/out")
    assert up.order == ct.fs.Order.AFTER and up.to_file.is_remote


def test_a_failed_transfer_fails_the_node_and_says_why(tmp_path, rsync):
    @ct.electron(files=[ct.fs.FileTransfer(str(tmp_path / "missing"), str(tmp_path / "x"))])
    def task():
        return 1

    @ct.lattice
    def workflow():
        return task()

    res = ct.dispatch_sync(workflow)()
    assert res.status == "FAILED" and "rsync" in res.error and "missing" in res.error


def test_http_download(tmp_path):
    import http.server
    import threading

    (tmp_path / "served.txt").write_text("over http")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/served.txt"
        ft = ct.fs.FileTransfer(url, str(tmp_path / "got.txt"))
        assert type(ft.strategy).__name__ == "HTTP"
        assert ft.run() == ("/served.txt", str(tmp_path / "got.txt"))
        assert (tmp_path / "got.txt").read_text() == "over http"
    finally:
        server.shutdown()
        server.server_close()


def test_bad_transfers_are_refused_before_dispatch(monkeypatch):
    with pytest.raises(QflowInputError, match="both ends remote"):
        ct.fs.FileTransfer("s3://bucket/a", "https://example.org/b")
    with pytest.raises(QflowInputError, match="files= takes qflow.fs.FileTransfer"):
        ct.electron(files=["/a"])(lambda: 1)
    with pytest.raises(QflowInputError, match="order is Order.BEFORE or Order.AFTER"):
        ct.fs.FileTransfer("/a", "/b", order="sometime")
    # S3 (mocked world: no AWS here) without credentials names what is missing
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    ft = ct.fs.TransferFromRemote("s3://bucket/key.txt", "/tmp/key.txt")
    with pytest.raises(ct.exceptions.DependencyError, match="AWS credentials"):
        ft.run()


def test_a_missing_cloud_library_names_the_extra(monkeypatch):
    # google-cloud-storage is not installed here (an optional extra)
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    ft = ct.fs.TransferFromRemote("gs://bucket/key.txt", "/tmp/key.txt")
    with pytest.raises(ct.exceptions.DependencyError, match=r"qflow-runtime\[gcs\]"):
        ft.run()


def test_a_local_transfer_without_rsync_copies_with_python_and_says_so_once(
    tmp_path, monkeypatch, caplog
):
    """A machine with no rsync program (PATH here holds none): local-to-local copies
    still work, as a file and as a folder, and the log says so once."""
    import logging

    from qflow import fs_strategies

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(fs_strategies, "_fallback_logged", False)
    (tmp_path / "in.txt").write_text("data")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("a")
    with caplog.at_level(logging.WARNING, logger="qflow"):
        ct.fs.FileTransfer(str(tmp_path / "in.txt"), str(tmp_path / "out" / "in.txt")).run()
        ct.fs.FileTransfer(str(tmp_path / "dir") + "/", str(tmp_path / "copy")).run()
        whole = ct.fs.FileTransfer(
            ct.fs.File(str(tmp_path / "dir"), is_dir=True, include_folder=True),
            str(tmp_path / "whole"),
        )
        whole.run()
    assert (tmp_path / "out" / "in.txt").read_text() == "data"
    assert (tmp_path / "copy" / "a.txt").read_text() == "a"
    assert (tmp_path / "whole" / "dir" / "a.txt").read_text() == "a"
    notes = [r for r in caplog.records if "No rsync program" in r.getMessage()]
    assert len(notes) == 1
