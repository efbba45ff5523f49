"""executor="slurm": electrons as jobs on a real local Slurm (started by conftest)."""

import subprocess
import time

import pytest

import qflow
from qflow.exceptions import QflowConfigError
from qflow.executors import SlurmExecutor

pytestmark = pytest.mark.slurm


@qflow.electron
def on_ray(x):
    return x + 1


@qflow.electron(executor=SlurmExecutor(time=2, job_name="qflow-test"))
def on_slurm(x):
    import os

    print(f"job {os.environ['SLURM_JOB_ID']}")
    return x * 10


def _squeue(name):
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_mixed_workflow():
    """A Slurm electron between Ray electrons: values flow both ways."""

    @qflow.lattice
    def flow(x):
        return on_ray(on_slurm(on_ray(x)))

    res = qflow.dispatch_sync(flow)(1)
    assert res.status == "COMPLETED", res.error
    assert res.result == 21
    assert res.get_node_result(2)["stdout"].startswith("job ")  # on_ray, 1, on_slurm


def test_exception_carries_remote_traceback():
    """A raising job gives a FAILED node with the remote traceback."""

    @qflow.electron(executor="slurm")
    def bad():
        raise ValueError("slurm boom")

    @qflow.lattice
    def flow():
        return on_ray(bad())

    res = qflow.dispatch_sync(flow)()
    assert res.status == "FAILED"
    error = res.get_node_result(0)["error"]
    assert "Slurm job" in error and "ValueError: slurm boom" in error and "Traceback" in error
    assert res.get_node_result(1)["status"] == "NEW_OBJECT"


def test_cancel_scancels_the_job():
    """qflow.cancel removes the running Slurm job."""

    @qflow.electron(executor=SlurmExecutor(time=5, job_name="qflow-cancel"))
    def long():
        import time

        time.sleep(300)

    @qflow.lattice
    def flow():
        return long()

    dispatch_id = qflow.dispatch(flow)()
    deadline = time.monotonic() + 60
    while "RUNNING" not in _squeue("qflow-cancel"):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.3)
    qflow.cancel(dispatch_id)
    res = qflow.get_result(dispatch_id, wait=True, timeout=60)
    assert res.status == "CANCELLED"
    deadline = time.monotonic() + 60
    while _squeue("qflow-cancel"):
        assert time.monotonic() < deadline, "scancel did not remove the job"
        time.sleep(0.5)


@pytest.mark.slow
def test_time_limit_fails_with_message():
    """A job past its time limit gives a FAILED node that says so."""

    @qflow.electron(executor=SlurmExecutor(time=1, job_name="qflow-timeout"))
    def overrun():
        import time

        time.sleep(600)

    @qflow.lattice
    def flow():
        return overrun()

    res = qflow.get_result(qflow.dispatch(flow)(), wait=True, timeout=400)
    assert res.status == "FAILED"
    assert "time limit of 1 min" in res.get_node_result(0)["error"]


def test_bad_config_lists_valid_parameters():
    """Unknown or invalid Slurm parameters are refused with the valid list."""
    with pytest.raises(QflowConfigError, match="partitionn.*Valid parameters are:.*partition"):
        SlurmExecutor(partitionn="debug")
    with pytest.raises(QflowConfigError, match="time"):
        SlurmExecutor(time=0)


@pytest.mark.slow
def test_ray_on_slurm():
    """Workers started inside a Slurm job join Ray; an electron lands on them."""
    import ray

    from qflow.slurm_cluster import slurm_down, slurm_up

    alloc = slurm_up(1, time_min=5)
    try:

        @qflow.electron(resources={alloc.resource: 1})
        def where():
            import os

            import ray

            return ray.get_runtime_context().get_node_id(), os.environ.get("SLURM_JOB_ID")

        @qflow.lattice
        def flow():
            return where()

        node_id, job_id = qflow.dispatch_sync(flow)().result
        assert job_id == alloc.job_id
        assert node_id != ray.get_runtime_context().get_node_id()
    finally:
        slurm_down(alloc)
    assert ray.cluster_resources().get(alloc.resource, 0) == 0
    assert not _squeue("qflow-ray")


def test_fan_out_goes_as_one_job_array():
    """Independent electrons with one Slurm config are submitted as a single array."""

    @qflow.electron(executor=SlurmExecutor(time=2, job_name="qflow-array"))
    def member(i):
        import os

        return os.environ.get("SLURM_ARRAY_JOB_ID"), int(os.environ["SLURM_ARRAY_TASK_ID"]), i * i

    @qflow.lattice
    def flow(n):
        return [member(i) for i in range(n)]

    res = qflow.dispatch_sync(flow)(4)
    assert res.status == "COMPLETED", res.error
    array_ids = {a for a, _, _ in res.result}
    assert len(array_ids) == 1 and None not in array_ids
    assert sorted(t for _, t, _ in res.result) == [0, 1, 2, 3]
    assert [sq for _, _, sq in res.result] == [0, 1, 4, 9]


@pytest.mark.slow
def test_bounded_wait_is_an_error_not_a_hang():
    """A job outliving max_wait_s is cancelled and fails its node with the reason."""

    @qflow.electron(executor=SlurmExecutor(time=5, max_wait_s=3, job_name="qflow-wait"))
    def stuck():
        import time

        time.sleep(120)

    @qflow.lattice
    def flow():
        return stuck()

    res = qflow.get_result(qflow.dispatch(flow)(), wait=True, timeout=120)
    assert res.status == "FAILED"
    assert "did not finish within max_wait_s=3.0 s; it was cancelled" in res.error
    deadline = time.monotonic() + 60
    while _squeue("qflow-wait"):
        assert time.monotonic() < deadline, "the stuck job was not cancelled"
        time.sleep(0.5)
