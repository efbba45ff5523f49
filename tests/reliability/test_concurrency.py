"""Many scripts against one QFLOW_HOME at once: nothing lost, nothing locked."""

from __future__ import annotations

import subprocess

import pytest

from qflow.store.sqlite import SQLiteStore
from tests.reliability.helpers import QFLOW, env_for, run, script

pytestmark = pytest.mark.slow

WORKER = """
    import qflow
    @qflow.electron
    def inc(x):
        return x + 1
    @qflow.lattice
    def flow(x):
        return [inc(inc(x)), inc(x)]
    ids = [qflow.dispatch(flow)(i) for i in range(5)]
    for i, d in enumerate(ids):
        res = qflow.get_result(d, wait=True, timeout=300)
        assert res.status == "COMPLETED" and res.result == [i + 2, i + 1], (res.status, res.error)
        print("DONE", d, flush=True)
"""


def _run_six(env) -> list[str]:
    procs = [
        subprocess.Popen(
            script(WORKER), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err
        ids += [line.split()[1] for line in out.splitlines() if line.startswith("DONE")]
    return ids


def _check_consistent(home, ids) -> None:
    store = SQLiteStore(home / "qflow.db")
    assert len(ids) == 30 and len(set(ids)) == 30
    rows = store.list_dispatches(1000)
    assert {r["dispatch_id"] for r in rows} == set(ids)
    for d in ids:
        row = store.get_dispatch(d)
        assert row["status"] == "COMPLETED" and row["end_time"] and row["error"] is None
        nodes = store.get_nodes(d)
        # 2 electrons, their literal arguments, the return value's node
        assert len(nodes) == 6 and {n["status"] for n in nodes} == {"COMPLETED"}


def test_six_embedded_scripts(tmp_path):
    env = env_for(tmp_path, QFLOW_NUM_CPUS="1")
    _check_consistent(tmp_path, _run_six(env))


@pytest.mark.service
def test_six_scripts_on_one_head(tmp_path):
    env = env_for(tmp_path)
    assert run([*QFLOW, "start", "--num-cpus", "2"], env).returncode == 0
    try:
        ids = _run_six(env)
    finally:
        run([*QFLOW, "stop"], env)
    _check_consistent(tmp_path, ids)
