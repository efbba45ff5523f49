"""`qflow start` under faults: a killed dispatcher service, a head that fails to
start, custom resources, and a quick `qflow stop`."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from qflow.exceptions import ClusterError
from qflow.service import status as service_status
from qflow.settings import Settings
from tests.reliability.helpers import LONG_DISPATCH, QFLOW, env_for, printed_id, run, script

SIMULATED_QPU_LOOP = """
    import pennylane as qml
    from qflow.variational import minimize
    def circuit(p):
        qml.RX(p[0], wires=0)
        return qml.expval(qml.PauliZ(0))
    res = minimize(circuit, [0.5], wires=1, steps=4, pack=2,
                   backend={backend})
    print("COST", round(float(res.final_cost), 3) < 1.0)
"""


@pytest.mark.service
@pytest.mark.slow
def test_killed_service_is_reported_and_never_silently_replaced(tmp_path):
    env = env_for(tmp_path)
    started = run([*QFLOW, "start", "--num-cpus", "2", "--resources", '{"qpu:simulated": 1}'], env)
    assert started.returncode == 0, started.stderr[-3000:]
    state = json.loads((tmp_path / "service.json").read_text())
    try:
        assert "dispatcher service pid" in run([*QFLOW, "status"], env).stdout

        # --resources: the simulated QPU backend runs on this one machine.
        qpu = run(
            script(SIMULATED_QPU_LOOP.replace("{backend}", "'simulated.qpu'")), env, timeout=240
        )
        assert "COST True" in qpu.stdout, qpu.stderr[-3000:]

        out = run(script(LONG_DISPATCH), env)
        # A script joining the head prints nothing of Ray's own (token notice, log lines).
        assert "Token authentication" not in out.stderr + started.stderr, out.stderr
        assert "WARNING" not in out.stderr and "INFO" not in out.stderr, out.stderr
        dispatch_id = printed_id(out)
        # Killed for good (Ray would restart a service whose process merely died).
        killed = run(
            script("""
            import ray, qflow
            from qflow._cluster import SERVICE_NAME, SERVICE_NAMESPACE
            qflow.init()
            ray.kill(ray.get_actor(SERVICE_NAME, namespace=SERVICE_NAMESPACE), no_restart=True)
            print("KILLED")
        """),
            env,
        )
        assert "KILLED" in killed.stdout, killed.stderr[-3000:]
        deadline = time.monotonic() + 30
        while psutil.pid_exists(state["service_pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)

        reader = run(
            script(f"""
            import qflow
            res = qflow.get_result({dispatch_id!r}, wait=True, timeout=90)
            print("STATUS", res.status)
            print("NODES", sorted({{n["status"] for n in res.get_all_node_results()}}))
            print("ERROR", res.error)
        """),
            env,
        )
        assert "STATUS FAILED" in reader.stdout, reader.stderr[-3000:]
        assert "dispatcher service died" in reader.stdout and "RUNNING" not in reader.stdout

        st = run([*QFLOW, "status"], env)
        assert st.returncode == 1 and "dispatcher service" in st.stdout and "dead" in st.stdout
        info = service_status(Settings(home=tmp_path))
        assert info["head"] and not info["service"] and not info["running"]

        again = run(
            script("""
            import qflow
            from qflow.exceptions import ClusterError
            @qflow.lattice
            def flow():
                return 1
            try:
                qflow.dispatch(flow)()
            except ClusterError as exc:
                print("REFUSED", exc)
        """),
            env,
        )
        assert "REFUSED" in again.stdout and "qflow stop && qflow start" in again.stdout, (
            again.stderr[-3000:]
        )
    finally:
        t0 = time.monotonic()
        stopped = run([*QFLOW, "stop"], env)
        took = time.monotonic() - t0
    assert stopped.returncode == 0, stopped.stderr
    # The CLI's own start-up is included; the stop itself has a 5 s grace at most.
    assert took < 10, f"qflow stop took {took:.1f} s"


@pytest.mark.service
@pytest.mark.slow
def test_idle_stop_is_quick(tmp_path):
    env = env_for(tmp_path)
    assert run([*QFLOW, "start", "--num-cpus", "1"], env).returncode == 0
    from qflow import service

    t0 = time.monotonic()
    pids = service.stop(Settings(home=tmp_path))
    took = time.monotonic() - t0
    assert pids and took < 5, f"stopping an idle head took {took:.1f} s"
    assert not [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]


def test_failed_start_says_why_and_where_the_log_is(tmp_path, monkeypatch):
    """A head that dies at once: ClusterError with the reason and the log path; status
    remembers why. (`false` stands in for a `ray` that cannot start.)"""
    from qflow import service

    monkeypatch.setattr(service, "ray_cli", lambda: "false")
    settings = Settings(home=tmp_path)
    with pytest.raises(ClusterError, match=r"did not come up: `ray start` exited with 1") as err:
        service.start(settings)
    assert str(tmp_path / "head.log") in str(err.value)
    info = service.status(settings)
    assert not info["running"] and "last `qflow start` failed" in info["reason"]
    assert not (tmp_path / "service.json").exists()


def test_status_of_a_dead_head(tmp_path):
    """A recorded head whose process is gone is reported as such, with what to do."""
    (tmp_path / "service.json").write_text(
        json.dumps(
            {
                "pid": 999_999_999,
                "create_time": 1.0,
                "address": "127.0.0.1:1",
                "home": str(tmp_path),
                "started_at": "x",
                "pids": [],
            }
        )
    )
    out = run([*QFLOW, "status"], env_for(tmp_path))
    assert out.returncode == 1 and "has exited" in out.stdout and "head.log" in out.stdout


def test_bad_resources_option(tmp_path):
    out = run([*QFLOW, "start", "--resources", "{oops"], env_for(tmp_path))
    assert out.returncode == 1 and "--resources must be a JSON object" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_embedded_ray_offers_resources_from_the_environment(tmp_path):
    """QFLOW_RESOURCES (or qflow.init(resources=...)) lets simulated.qpu run embedded."""
    env = env_for(tmp_path, QFLOW_RESOURCES='{"qpu:simulated": 1}')
    out = run(script(SIMULATED_QPU_LOOP.replace("{backend}", "'simulated.qpu'")), env, timeout=240)
    assert "COST True" in out.stdout, out.stderr[-3000:]
    api = run(
        script("""
        import qflow, ray
        print("MODE", qflow.init(resources={"qpu:simulated": 2}, num_cpus=1))
        print("RES", ray.cluster_resources().get("qpu:simulated"))
    """),
        env_for(tmp_path),
    )
    assert "MODE embedded" in api.stdout and "RES 2.0" in api.stdout, api.stderr[-3000:]


def test_start_retries_a_port_taken_under_it(tmp_path, monkeypatch):
    """A head that loses its port to another process is started again on a new one."""
    from qflow import service

    fake = tmp_path / "fake-ray"
    count = tmp_path / "count"
    fake.write_text(
        f"#!/bin/sh\necho x >> {count}\n"
        "echo 'Check failed: server_ Failed to start the grpc server. Address "
        "already in use'\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(service, "ray_cli", lambda: str(fake))
    with pytest.raises(ClusterError, match="exited with 1"):
        service.start(Settings(home=tmp_path / "home"))
    assert len(count.read_text().split()) == 3
