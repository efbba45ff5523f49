"""A long node's start and printed lines reach the store while it runs."""

import time

import qflow
from qflow._api import _runtime
from qflow._wait import wait_until


@qflow.electron
def talk_then_sleep(seconds):
    print("warming up", flush=True)
    time.sleep(seconds)
    print("done")
    return seconds


@qflow.electron
def quick(x):
    print("quick")
    return x


@qflow.lattice
def flow(seconds):
    return talk_then_sleep(seconds), quick(1)


def test_a_long_node_reports_its_start_and_stdout_while_running():
    dispatch_id = qflow.dispatch(flow)(6)
    store = _runtime().store

    rows = []

    def seen():
        row = store.get_node_texts(dispatch_id)[0]
        if row["status"] == "RUNNING" and row["start_time"]:
            rows.append(row)
        return bool(rows)

    assert wait_until(seen, timeout=20, interval=0.2), "the start was never written"
    row = rows[0]
    assert "warming up" in row["stdout"] and "done" not in row["stdout"]
    assert row["inputs_text"] == "(6)" and row["ray_node_id"]
    res = qflow.get_result(dispatch_id, wait=True, timeout=60)
    final = res.get_node_result(0)
    assert final["status"] == "COMPLETED" and final["stdout"] == "warming up\ndone\n"
    # The final record keeps the start the worker reported (to the second).
    assert final["start_time"].isoformat()[:19] == row["start_time"][:19]
    assert res.get_node_result(2)["stdout"] == "quick\n"  # node 1 is the literal 6


def test_progress_never_overwrites_a_finished_node(tmp_path):
    from qflow.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    store.create_dispatch(
        {"dispatch_id": "d", "name": "f", "status": "RUNNING", "created_at": "t"},
        [
            {
                "node_id": 0,
                "name": "a",
                "kind": "electron",
                "status": "COMPLETED",
                "stdout": "all of it",
            }
        ],
    )
    assert not store.note_progress("d", 0, stdout="part", start_time="t0")
    assert store.get_nodes("d")[0]["stdout"] == "all of it"
