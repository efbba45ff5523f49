"""ray-cluster.yaml is valid for Ray's launcher and matches the backends' resources."""

import copy
import pathlib

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from qflow.backends import get_backend
from qflow.backends.braket import BRAKET_GATEWAY_RESOURCE

CONFIG = yaml.safe_load((pathlib.Path(__file__).parents[1] / "ray-cluster.yaml").read_text())


def test_validates_with_rays_schema():
    """Ray's own validation (after Ray fills its defaults, as `ray up` does) accepts it."""
    validate_config(prepare_config(copy.deepcopy(CONFIG)))


def test_validation_is_real():
    """The same validation rejects a broken copy, so the check above can fail."""
    broken = copy.deepcopy(CONFIG)
    broken["available_node_types"]["qpu-gateway"]["resources"] = ["qpu"]
    with pytest.raises((RuntimeError, ValueError, jsonschema.ValidationError)):
        validate_config(prepare_config(broken))


def test_gateway_resource_matches_braket_backends():
    """The qpu-gateway workers advertise what braket.aws.qubit asks for."""
    gateway = CONFIG["available_node_types"]["qpu-gateway"]
    arn = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
    wanted = get_backend("braket.aws.qubit", device_arn=arn).ray_resources()
    assert set(wanted) == {BRAKET_GATEWAY_RESOURCE}
    assert set(wanted) <= set(gateway["resources"])
    assert gateway["min_workers"] >= 1


def test_setup_installs_qflow_from_this_checkout():
    """Every node installs qflow from the checkout ``ray up`` copies to it (no package
    index carries qflow-runtime), and the head starts qflow's service and server on
    the cluster after Ray."""
    ((remote, local),) = CONFIG["file_mounts"].items()
    assert local == "."
    assert any(
        f"{remote.replace('~', '$HOME')}[quantum]" in cmd for cmd in CONFIG["setup_commands"]
    )
    assert not any('"qflow-runtime' in cmd for cmd in CONFIG["setup_commands"])
    head = CONFIG["head_start_ray_commands"]
    ray_start = next(i for i, c in enumerate(head) if c.startswith("ray start --head"))
    qflow_start = next(i for i, c in enumerate(head) if c.startswith("qflow start --address"))
    assert ray_start < qflow_start and "--listen" in head[qflow_start]


def _fake_cluster_config(port: int, ip: str) -> dict:
    """ray-cluster.yaml's worker node types and resources, for Ray's fake multi-node
    provider: each node a local raylet of 1 CPU (cloud instance sizes do not fit this
    machine), min_workers 0 so that the gateway exists only when asked for, and a short
    idle timeout so that its release is seen within the test."""
    types = {
        name: {
            "resources": {"CPU": 1, **spec.get("resources", {})},
            "node_config": {},
            "min_workers": 0,
            "max_workers": spec["max_workers"],
        }
        for name, spec in CONFIG["available_node_types"].items()
        if name != CONFIG["head_node_type"]
    }
    types["ray.head.default"] = {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0}
    return {
        "cluster_name": "qflow-fake",
        "max_workers": CONFIG["max_workers"],
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"{ip}:{port}",
        },
        "available_node_types": types,
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


_AUTOSCALED_LOOP = r"""
import json, time
import pennylane as qml, ray, qflow
from qflow.backends import get_backend
from qflow.backends.braket import BRAKET_GATEWAY_RESOURCE
from qflow.variational import minimize

qflow.init()  # joins RAY_ADDRESS: the fake autoscaling head


def gateways():
    return [n["NodeID"] for n in ray.nodes()
            if n["Alive"] and BRAKET_GATEWAY_RESOURCE in n["Resources"]]


def circuit(p):
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))


# The head answers before its autoscaler has first reported; wait for that report.
from qflow.executors.placement import autoscaler_node_types_unknown
deadline = time.monotonic() + 90
while not autoscaler_node_types_unknown():
    assert time.monotonic() < deadline, "the autoscaler never reported"
    time.sleep(0.5)
before = gateways()
# The simulated QPU asks for the gateway resource as braket.aws.qubit does.
qpu = get_backend("simulated.qpu", inner="default.qubit", round_trip_ms=0,
                  resource=BRAKET_GATEWAY_RESOURCE)
res = minimize(circuit, [0.5], wires=1, steps=6, pack=3, backend=qpu, progress=False)
during = gateways()
t0 = time.monotonic()
while gateways() and time.monotonic() - t0 < 120:
    time.sleep(1)
print(json.dumps({"before": before, "during": during, "actors": res.actor_node_ids,
                  "cost": res.final_cost, "after": gateways(),
                  "released_s": time.monotonic() - t0}))
"""


@pytest.mark.multinode
@pytest.mark.slow
def test_autoscaler_launches_a_gateway_for_a_packed_loop(tmp_path):
    """Issue 11: with ray-cluster.yaml's node types under Ray's fake multi-node autoscaler,
    a packed loop needing the gateway resource makes the autoscaler launch a qpu-gateway
    node, the loop's actor runs there, and the idle node is released afterwards.

    The head runs in its own process group on its own port (never `ray stop`, which would
    take the suite's own Ray down too), and every process of that cluster is killed at
    the end whatever happens.
    """
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import psutil
    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    ip = ray._private.services.get_node_ip_address()
    config = tmp_path / "fake-cluster.json"
    config.write_text(json.dumps(_fake_cluster_config(port, ip)))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    env.pop("RAY_ADDRESS", None)
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with open(tmp_path / "head.log", "w") as log:
        head = subprocess.Popen(
            [
                ray_cli,
                "start",
                "--head",
                f"--port={port}",
                f"--autoscaling-config={config}",
                "--num-cpus=1",
                "--block",
                "--disable-usage-stats",
                "--include-dashboard=false",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection((ip, port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the fake autoscaling head never answered"
                time.sleep(0.5)
        out = subprocess.run(
            [sys.executable, "-c", _AUTOSCALED_LOOP],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "RAY_ADDRESS": f"{ip}:{port}", "QFLOW_HOME": str(tmp_path / "home")},
        )
        assert out.returncode == 0, out.stderr[-4000:]
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen["before"] == [], "min_workers 0: no gateway until the loop asks"
        assert len(seen["during"]) == 1, "the autoscaler launched one gateway node"
        assert set(seen["actors"]) == set(seen["during"]), "the actor ran on the gateway"
        assert seen["cost"] < -0.7
        assert seen["after"] == [], "the idle gateway was released"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the whole group: GCS, raylet, monitor
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        for proc in psutil.process_iter(["cmdline"]):  # worker raylets outlive the head
            if any(f"{ip}:{port}" in part for part in proc.info["cmdline"] or []):
                proc.kill()
