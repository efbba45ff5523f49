"""On a multi-node Ray (``ray.cluster_utils.Cluster``), an electron on another node gets
its secret from the courier on the dispatcher's node, and nothing Ray wrote holds it."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import env_for, run, script
from tests.secrets.test_canary import _canary, _leaks, _qflow, tmp_path  # noqa: F401

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

FAR_NODE = """
    import os, ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    far = cluster.add_node(num_cpus=1, resources={"far": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    import qflow

    @qflow.electron(resources={"far": 1}, secrets=["CANARY_KEY"])
    def remote_use():
        print("far node has", os.environ["CANARY_KEY"])
        return {"length": len(qflow.secret("CANARY_KEY")),
                "node": ray.get_runtime_context().get_node_id()}

    @qflow.lattice(secrets=["CANARY_KEY"])  # the lattice's reach its electrons too
    def flow():
        return remote_use()

    res = qflow.dispatch_sync(flow)()
    print("STATUS", res.status)
    if res.status != "COMPLETED":
        raise SystemExit(res.error)
    print("FAR", res.result["node"] == far.node_id, res.result["length"])
    couriers = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("qflow-secrets-")]
    print("COURIERS", len(couriers))
    print("STDOUT", res.get_all_node_results()[-1]["stdout"].strip()
          or [n["stdout"] for n in res.get_all_node_results() if n["stdout"]][0].strip())
    ray.shutdown()
    cluster.shutdown()
"""


def test_an_electron_on_another_node_gets_its_secret_from_the_courier(tmp_path):  # noqa: F811
    canary = _canary()
    home, ray_tmp = tmp_path / "home", tmp_path / "ray"
    ray_tmp.mkdir()
    env = env_for(home, RAY_TMPDIR=str(ray_tmp))
    _qflow(env, "secret", "set", "CANARY_KEY", input=canary)
    out = run(script(FAR_NODE), env, timeout=300)
    lines = dict(ln.split(" ", 1) for ln in out.stdout.splitlines() if " " in ln)
    assert lines.get("STATUS") == "COMPLETED", (out.stdout, out.stderr[-3000:])
    assert lines["FAR"] == f"True {len(canary)}"
    assert lines["COURIERS"] == "1"
    assert lines["STDOUT"] == "far node has [secret CANARY_KEY]"
    assert canary not in out.stdout + out.stderr
    assert _leaks(canary, [home, ray_tmp], home / "secrets") == []
