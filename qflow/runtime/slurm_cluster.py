"""Ray-on-Slurm: a Slurm job whose tasks start Ray worker nodes that join this cluster.

Inside the allocation there is no per-task Slurm latency: electrons and variational
loops target it with the resource ``slurm:<jobid>`` that its workers advertise.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import ray

from qflow.core.polling import wait_until
from qflow.exceptions import ClusterError, SlurmError
from qflow.executors.slurm import SlurmExecutor
from qflow.runtime.ray_cluster import ray_cli
from qflow.settings import Settings

__all__ = ["SlurmAllocation", "slurm_down", "slurm_up"]


def _ray_worker(address: str, cpus: int) -> int:
    """Runs inside the Slurm job: a Ray worker node that lives as long as the job."""
    resource = f"slurm:{os.environ['SLURM_JOB_ID']}"
    ray_bin = ray_cli()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Ray 2.60 token auth: the head's token file is shared through $HOME here; say so
    # explicitly so a worker never falls back to no-auth and gets InvalidAuthToken.
    env.setdefault("RAY_AUTH_MODE", "token")
    cmd = [
        ray_bin,
        "start",
        f"--address={address}",
        "--block",
        f"--num-cpus={cpus}",
        f"--resources={json.dumps({resource: cpus})}",
        "--disable-usage-stats",
    ]
    return subprocess.call(cmd, env=env)


@dataclass(frozen=True)
class SlurmAllocation:
    """A running Ray-on-Slurm allocation."""

    job_id: str
    resource: str
    nodes: int


def _state_file(settings: Settings) -> Any:
    return settings.home / "slurm-allocations.json"


def recorded(settings: Settings) -> list[dict[str, Any]]:
    """Allocations ``qflow slurm up`` started from this QFLOW_HOME and not yet taken down."""
    try:
        return json.loads(_state_file(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def record(settings: Settings, allocations: list[dict[str, Any]]) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    _state_file(settings).write_text(json.dumps(allocations))


def slurm_up(
    nodes: int = 1,
    *,
    time_min: int = 60,
    cpus_per_task: int = 1,
    partition: str | None = None,
    wait_s: float = 120.0,
) -> SlurmAllocation:
    """Submit a job whose ``nodes`` tasks join this Ray cluster as worker nodes.

    Returns once Ray sees them, so electrons can use ``resources={alloc.resource: 1}``.
    """
    if not ray.is_initialized():
        raise ClusterError(
            "slurm_up joins the Ray cluster this process is connected to; "
            "connect first (qflow.dispatch does, or ray.init())."
        )
    address = ray.get_runtime_context().gcs_address
    cfg: dict[str, Any] = {
        "time": time_min,
        "cpus_per_task": cpus_per_task,
        "job_name": "qflow-ray",
    }
    if partition:
        cfg["partition"] = partition
    ex = SlurmExecutor(**cfg)._executor()
    ex.update_parameters(ntasks_per_node=1, nodes=nodes)
    job = ex.submit(_ray_worker, address, cpus_per_task)
    resource = f"slurm:{job.job_id}"

    def ended_early() -> None:
        if job.done():
            raise SlurmError(
                f"Ray-on-Slurm job {job.job_id} ended before joining: {job.exception()}"
            )

    def late() -> SlurmError:
        job.cancel(check=False)
        return SlurmError(f"Ray-on-Slurm job {job.job_id} did not join within {wait_s} s.")

    wait_until(
        lambda: ray.cluster_resources().get(resource, 0) >= nodes * cpus_per_task,
        wait_s,
        interval=0.5,
        check=ended_early,
        on_timeout=late,
    )
    return SlurmAllocation(job_id=str(job.job_id), resource=resource, nodes=nodes)


def slurm_down(allocation: SlurmAllocation, wait_s: float = 60.0) -> None:
    """Cancel the allocation's job and wait until its Ray nodes have left."""
    subprocess.run(["scancel", allocation.job_id], check=False, capture_output=True)
    t0 = time.monotonic()
    wait_until(
        lambda: ray.cluster_resources().get(allocation.resource, 0) <= 0,
        wait_s,
        interval=0.5,
        on_timeout=lambda: SlurmError(
            f"Ray nodes of job {allocation.job_id} still present after {wait_s} s."
        ),
    )
    # COMPLETING: its processes are still exiting.
    wait_until(
        lambda: not _in_queue(allocation.job_id),
        max(0.0, wait_s - (time.monotonic() - t0)),
        interval=0.5,
        on_timeout=lambda: SlurmError(
            f"Slurm job {allocation.job_id} still queued after {wait_s} s."
        ),
    )
    from qflow.runtime.service import _forget_default_address

    # `ray start --address` inside the job pointed Ray's default-address file at this head.
    _forget_default_address(ray.get_runtime_context().gcs_address)


def _in_queue(job_id: str) -> bool:
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, check=False
    )
    return out.returncode == 0 and bool(out.stdout.strip())
