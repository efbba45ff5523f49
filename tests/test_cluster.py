"""Connecting to Ray."""

import os
import subprocess
import sys
import textwrap


def test_unreachable_address_is_clear(tmp_path):
    """A RAY_ADDRESS that does not answer gives a ClusterConnectionError with advice."""
    script = textwrap.dedent("""
        import qflow
        from qflow.exceptions import ClusterConnectionError
        @qflow.lattice
        def flow():
            return 1
        try:
            qflow.dispatch(flow)()
        except ClusterConnectionError as exc:
            print("ERR", exc)
    """)
    env = {**os.environ, "QFLOW_HOME": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:1"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("ERR")]
    assert line, out.stderr[-3000:]
    assert "No Ray cluster answers at '127.0.0.1:1'" in line[0]
    assert "qflow start" in line[0]


def test_node_shapes_are_reused_briefly_but_never_for_a_refusal(monkeypatch):
    """Feasibility checks of back-to-back dispatches read the node shapes once; a request
    the cached shapes cannot hold is judged on fresh ones before it is refused."""
    import pytest

    import qflow
    from qflow.exceptions import InfeasibleResourceError
    from qflow.executors import check_feasible
    from qflow.executors import placement as _cluster

    reads = []
    real = _cluster.node_shapes

    def counted():
        reads.append(1)
        return real()

    monkeypatch.setattr(_cluster, "node_shapes", counted)
    monkeypatch.setattr(_cluster, "_shapes_cache", None)

    @qflow.electron(num_cpus=1)
    def small():
        return 1

    @qflow.electron(resources={"no-such-resource": 1})
    def impossible():
        return 1

    @qflow.lattice
    def ok_flow():
        return small()

    @qflow.lattice
    def bad_flow():
        return impossible()

    for _ in range(3):
        check_feasible(ok_flow.build_graph())
    assert len(reads) == 1
    with pytest.raises(InfeasibleResourceError, match="no-such-resource"):
        check_feasible(bad_flow.build_graph())
    assert len(reads) == 2


def test_raylet_notices_about_qflows_workers_go_to_a_log_not_the_terminal(tmp_path, capsys):
    import ray._private.worker as ray_worker

    from qflow.runtime.ray_cluster import route_raylet_notices

    before = ray_worker.print_to_stdstream
    log = tmp_path / "ray-notices.log"
    try:
        route_raylet_notices(log)
        route_raylet_notices(log)  # once is enough: not wrapped twice
        notice = "WARNING: 8 PYTHON worker processes have been started on node: n1"
        ray_worker.print_to_stdstream({"lines": [notice], "pid": "raylet", "is_err": False})
        other = "some other raylet message"
        ray_worker.print_to_stdstream(
            {"lines": [other], "pid": "raylet", "is_err": False}, ignore_prefix=False
        )
    finally:
        ray_worker.print_to_stdstream = before
    printed = capsys.readouterr()
    assert notice not in printed.out + printed.err
    assert other in printed.out + printed.err  # everything else is printed as Ray does
    assert notice in log.read_text() and oct(log.stat().st_mode & 0o777) == "0o600"
