"""A node leaves a multi-node Ray mid-dispatch (``ray.cluster_utils.Cluster``): work only
it could hold ends FAILED with the reason, instead of waiting for ever."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import env_for, run, script

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

LOST_RESOURCE = """
    import time
    import ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    extra = cluster.add_node(num_cpus=2, resources={"extra": 2})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    import qflow

    @qflow.electron(resources={"extra": 1})
    def pinned(i):
        time.sleep(60)
        return i

    @qflow.lattice
    def flow(n):
        return [pinned(i) for i in range(n)]

    dispatch_id = qflow.dispatch(flow)(6)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = qflow.get_result(dispatch_id).get_all_node_results()
        if sum(1 for n in nodes if n["status"] == "RUNNING" and n["start_time"]) >= 2:
            break
        time.sleep(0.2)
    print("LOST", extra.node_id, flush=True)
    cluster.remove_node(extra)
    t0 = time.monotonic()
    res = qflow.get_result(dispatch_id, wait=True, timeout=90)
    print("STATUS", res.status, round(time.monotonic() - t0, 1))
    print("ERROR", res.error.replace(chr(10), " "))
    statuses = sorted({n["status"] for n in res.get_all_node_results() if n["node_name"] == "pinned"})
    print("NODES", *statuses)
    ray.shutdown()
    cluster.shutdown()
"""


def test_losing_the_only_node_with_a_resource_fails_the_dispatch(tmp_path):
    out = run(script(LOST_RESOURCE), env_for(tmp_path), timeout=300)
    lines = dict(ln.split(" ", 1) for ln in out.stdout.splitlines() if " " in ln)
    assert "STATUS" in lines, (out.stdout, out.stderr[-3000:])
    status, seconds = lines["STATUS"].split()
    assert status == "FAILED" and float(seconds) < 60, lines
    assert "'extra'" in lines["ERROR"] and "left the cluster" in lines["ERROR"]
    assert lines["LOST"][:12] in lines["ERROR"]  # names the node that left
    assert lines["NODES"] == "FAILED"
