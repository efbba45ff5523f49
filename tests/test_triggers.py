"""Triggers (Covalent's ct.triggers): each kind fires on its condition (in-process,
with a recording callback), and end to end under a real `qflow start` service."""

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import qflow as ct
from qflow._wait import wait_until
from qflow.exceptions import ClusterError, QflowInputError


def _watch(trigger):
    fired = []
    trigger.attach(lambda: fired.append(f"d{len(fired)}") or fired[-1])
    thread = threading.Thread(target=trigger.observe, daemon=True)
    thread.start()
    return fired, thread


def test_time_trigger_fires_every_gap_until_stopped():
    trigger = ct.triggers.TimeTrigger(time_gap=0.2)
    fired, thread = _watch(trigger)
    assert wait_until(lambda: len(fired) >= 3, timeout=10, interval=0.05)
    trigger.stop()
    thread.join(5)
    assert not thread.is_alive() and trigger.new_dispatch_ids == fired


def test_time_trigger_fires_at_once_then_every_gap_as_covalent_does():
    """TimeTrigger(time_gap=1) watched for 3.5 s fires at 0, 1, 2 and 3 s: 4 times."""
    trigger = ct.triggers.TimeTrigger(time_gap=1.0)
    t0 = time.monotonic()
    fired, thread = _watch(trigger)
    assert wait_until(lambda: len(fired) >= 1, timeout=0.5, interval=0.01)
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    trigger.stop()
    thread.join(5)
    assert len(fired) == 4, fired


def test_dir_trigger_fires_once_per_changed_file(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    trigger = ct.triggers.DirTrigger(
        str(watched), event_names=["created", "modified"], poll_interval=0.05
    )
    fired, thread = _watch(trigger)

    def write(text):
        # Whole, in one step: a poll that lands between the truncation and the write
        # of write_text would rightly see two changes.
        (tmp_path / "next.txt").write_text(text)
        os.replace(tmp_path / "next.txt", watched / "a.txt")

    time.sleep(0.3)
    write("1")
    assert wait_until(lambda: len(fired) == 1, timeout=5, interval=0.05)
    time.sleep(0.1)
    write("12")
    assert wait_until(lambda: len(fired) == 2, timeout=5, interval=0.05)
    time.sleep(0.3)
    assert len(fired) == 2  # nothing changed since
    trigger.stop()
    thread.join(5)


def test_sqlite_trigger_counts_new_matching_rows(tmp_path):
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE jobs (status TEXT)")
    trigger = ct.triggers.SQLiteTrigger(
        str(db), "jobs", poll_interval=0.05, where_clauses=["status = 'ready'"], trigger_after_n=2
    )
    fired, thread = _watch(trigger)
    time.sleep(0.2)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO jobs VALUES (?)", [("ready",), ("other",), ("ready",), ("ready",)]
        )
    assert wait_until(lambda: len(fired) == 1, timeout=5, interval=0.05)
    time.sleep(0.3)
    assert len(fired) == 1  # the third ready row waits for a fourth
    trigger.stop()
    thread.join(5)


def test_bad_triggers_and_no_service():
    with pytest.raises(QflowInputError, match="time_gap is a number of seconds > 0"):
        ct.triggers.TimeTrigger(time_gap=0)
    with pytest.raises(QflowInputError, match="event_names are among"):
        ct.triggers.DirTrigger("/tmp", event_names="touched")
    with pytest.raises(QflowInputError, match="triggers takes qflow.triggers objects"):
        ct.lattice(triggers=["hourly"])(lambda: 1)

    @ct.lattice(triggers=ct.triggers.TimeTrigger(time_gap=1))
    @ct.electron
    def workflow():
        return 1

    with pytest.raises(ClusterError, match="run `qflow start` first"):
        ct.dispatch(workflow)()


SCRIPT = textwrap.dedent("""
    import sys, time, qflow as ct
    from pathlib import Path
    read, write = Path(sys.argv[1]), Path(sys.argv[2])

    @ct.lattice(triggers=ct.triggers.DirTrigger(str(read.parent), event_names="modified"))
    @ct.electron
    def dir_workflow():
        total = sum(int(n) for n in read.read_text().split())
        with open(write, "a") as f:
            f.write(f"{total}\\n")

    read.write_text("0\\n")
    print("ID", ct.dispatch(dir_workflow)())
""")

STOP = textwrap.dedent("""
    import sys, qflow as ct
    started = ct.stop_triggers(sys.argv[1])
    res = ct.get_result(sys.argv[1], wait=True, timeout=60)
    print("STOPPED", len(started), res.status, res.result == started)
""")


@pytest.mark.service
@pytest.mark.slow
def test_dir_trigger_under_the_service_outlives_its_script(tmp_path):
    home, watched = tmp_path / "home", tmp_path / "in"
    watched.mkdir()
    read, write = watched / "numbers.txt", tmp_path / "sums.txt"
    env = {**os.environ, "QFLOW_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    cli = [sys.executable, "-m", "qflow.cli"]

    def run(args, t=180):
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=t)

    started = run([*cli, "start", "--num-cpus", "2"])
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        out = run([sys.executable, "-c", SCRIPT, str(read), str(write)])
        assert out.returncode == 0, out.stderr[-3000:]
        dispatch_id = out.stdout.split("ID ", 1)[1].split()[0]
        expected = []
        for i in range(1, 4):  # the script has exited: the service watches
            time.sleep(1.0)
            with open(read, "a") as f:
                f.write(f"{i}\n")
            expected.append(sum(range(i + 1)))
            assert wait_until(
                lambda: write.exists() and len(write.read_text().split()) == len(expected),
                timeout=60,
                interval=0.2,
            ), f"trigger {i} did not run the lattice"
        assert [int(n) for n in write.read_text().split()] == expected
        stopped = run([sys.executable, "-c", STOP, dispatch_id])
        assert stopped.stdout.strip().splitlines()[-1] == "STOPPED 3 COMPLETED True", (
            stopped.stderr[-3000:]
        )
    finally:
        run([*cli, "stop"])
