"""qflow.delete / qflow.gc and their CLI: old dispatches and their blobs go."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import qflow
from qflow.exceptions import DispatchNotFoundError, QflowInputError
from qflow.retention import parse_age
from tests.reliability.helpers import QFLOW, env_for, run


@qflow.electron
def big(n):
    return np.ones(n)


@qflow.electron
def same(x):
    return x


@qflow.electron
def nap(t):
    import time

    time.sleep(t)
    return t


@qflow.lattice
def inner(n):
    return same(big(n))


@qflow.lattice
def flow(n):
    return same(big(n)), qflow.electron(inner)(n)


def _blob_files(home):
    return list((home / "blobs").rglob("*.pkl")) if (home / "blobs").exists() else []


def test_delete_removes_rows_sublattices_and_only_unused_blobs(qflow_home, tmp_path):
    from pathlib import Path

    home = Path(qflow_home)
    keep = qflow.dispatch_sync(flow)(40_000)  # 320 KB outputs: blob files
    gone = qflow.dispatch_sync(flow)(50_000)
    assert gone.status == "COMPLETED"
    # big, 50_000, same | the sublattice at 3
    sub_id = gone.get_node_result(3)["sublattice_result"].dispatch_id
    files_before = set(_blob_files(home))
    assert qflow.delete(gone.dispatch_id) == 2  # the dispatch and its sublattice
    with pytest.raises(DispatchNotFoundError):
        qflow.get_result(gone.dispatch_id)
    with pytest.raises(DispatchNotFoundError):
        qflow.get_result(sub_id)
    db = sqlite3.connect(home / "qflow.db")
    assert (
        db.execute(
            "SELECT count(*) FROM nodes WHERE dispatch_id LIKE ?", (gone.dispatch_id + "%",)
        ).fetchone()[0]
        == 0
    )
    assert set(_blob_files(home)) < files_before
    res = qflow.get_result(keep.dispatch_id)
    assert res.result[0].shape == (40_000,)  # its blobs are untouched
    assert res.get_node_result(0)["output"].get_deserialized().sum() == 40_000


def test_value_passed_on_unchanged_is_stored_once(qflow_home):
    from pathlib import Path

    before = set(_blob_files(Path(qflow_home)))
    res = qflow.dispatch_sync(inner)(77_777)
    new = set(_blob_files(Path(qflow_home))) - before
    assert res.status == "COMPLETED"
    # big's output, same's identical output and the identical result: one file.
    assert len(new) == 1


def test_delete_refuses_running_and_unknown():
    @qflow.lattice
    def slow():
        return nap(5)

    dispatch_id = qflow.dispatch(slow)()
    with pytest.raises(QflowInputError, match="still running; cancel them first"):
        qflow.delete([dispatch_id])
    qflow.cancel(dispatch_id)
    qflow.get_result(dispatch_id, wait=True, timeout=60)
    assert qflow.delete([dispatch_id]) == 1
    with pytest.raises(DispatchNotFoundError):
        qflow.delete(["no-such-id"])


def test_gc_by_age(qflow_home):
    res = qflow.dispatch_sync(inner)(10)
    db = sqlite3.connect(f"{qflow_home}/qflow.db")
    db.execute(
        "UPDATE dispatches SET end_time = '2000-01-01T00:00:00+00:00' WHERE dispatch_id = ?",
        (res.dispatch_id,),
    )
    db.commit()
    recent = qflow.dispatch_sync(inner)(10)
    assert qflow.gc("30d") >= 1
    with pytest.raises(DispatchNotFoundError):
        qflow.get_result(res.dispatch_id)
    assert qflow.get_result(recent.dispatch_id).status == "COMPLETED"


def test_parse_age():
    assert parse_age("30d").days == 30 and parse_age("90m").seconds == 5400
    with pytest.raises(QflowInputError, match="such as 30d"):
        parse_age("soon")


@pytest.mark.slow
def test_cli_gc_delete_and_size(tmp_path):
    env = env_for(tmp_path)
    made = run([*QFLOW, "demo", "--chunks", "2", "--samples", "1000"], env)
    assert made.returncode == 0, made.stderr[-2000:]
    status = run([*QFLOW, "status"], env)
    assert "store " in status.stdout and "KiB" in status.stdout
    ids = [line.split()[0] for line in run([*QFLOW, "list"], env).stdout.splitlines()]
    assert run([*QFLOW, "delete", ids[0]], env).stdout.startswith("deleted 1")
    assert "no dispatches yet" in run([*QFLOW, "list"], env).stdout
    out = run([*QFLOW, "gc", "--older-than", "0s"], env)
    assert out.returncode == 0 and "deleted 0" in out.stdout
    bad = run([*QFLOW, "gc", "--older-than", "later"], env)
    assert bad.returncode == 1 and "such as 30d" in bad.stderr
