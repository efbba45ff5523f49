"""Electrons as Slurm jobs, through submitit."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qflow.core.polling import wait_until
from qflow.core.task import OUTCOME_ATTR, NodeOutcome, TaskCall, execute_call
from qflow.exceptions import QflowConfigError, SlurmError
from qflow.executors.base import Executor, Submission, fetch_inputs, refuse_deps_pip
from qflow.settings import Settings


class SlurmConfig(BaseModel):
    """Where and how an electron's Slurm job runs; validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partition: str | None = None
    time: int = Field(10, ge=1, description="Time limit in minutes.")
    cpus_per_task: int = Field(1, ge=1)
    mem: str | None = Field(None, description="Memory per node, e.g. '2G'.")
    gpus: int | None = Field(None, ge=0)
    account: str | None = None
    qos: str | None = None
    job_name: str = "qflow"
    extra_sbatch: dict[str, Any] = Field(
        default_factory=dict, description="Further #SBATCH parameters."
    )
    folder: Path | None = Field(None, description="submitit's folder (default under $QFLOW_HOME).")
    max_wait_s: float = Field(24 * 3600, gt=0, description="Give up waiting after this long.")
    poll_s: float = Field(0.5, gt=0)
    array_window_s: float = Field(
        0.05, ge=0, description="Electrons submitted within this window go as one job array."
    )
    secrets: tuple[str, ...] = Field(
        (), description="Secret names granted to every job's electron (see qflow.secrets)."
    )

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_names(cls, value: Any) -> tuple[str, ...]:
        from qflow.secrets.keep import secret_names

        return secret_names(value)


class SlurmExecutor(Executor):
    """Runs each electron as a Slurm job submitted with submitit.

    Args:
        **config: see :class:`SlurmConfig` (partition, time, cpus_per_task, mem, gpus,
            account, qos, job_name, extra_sbatch, folder, max_wait_s).

    Example:
        >>> import qflow
        >>> from qflow.executors import SlurmExecutor
        >>> @qflow.electron(executor=SlurmExecutor(time=5, cpus_per_task=2))
        ... def heavy(x):
        ...     return x * 2
    """

    @classmethod
    def affinity(cls) -> int:
        # Available where sbatch exists, but never the default: electrons go to Ray.
        return 1 if shutil.which("sbatch") else -1

    def __init__(self, **config: Any) -> None:
        try:
            self.config = SlurmConfig(**config)
        except ValidationError as exc:
            valid = ", ".join(SlurmConfig.model_fields)
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in exc.errors()
            )
            raise QflowConfigError(
                f"Invalid Slurm configuration ({problems}). Valid parameters are: {valid}."
            ) from exc
        self._lock = threading.Lock()
        self._queue: list[tuple[TaskCall, list[Any], Future, dict[str, Any]]] = []

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets every electron this executor runs is granted."""
        return self.config.secrets

    def __getstate__(self) -> dict[str, Any]:
        # Electron options travel with the graph: ship the config, not the queue or lock.
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._lock = threading.Lock()
        self._queue = []

    def _executor(self) -> Any:
        import submitit

        cfg = self.config
        folder = cfg.folder or Settings.from_env().home / "slurm" / "%j"
        ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=0)
        params: dict[str, Any] = {
            "time": cfg.time,
            "cpus_per_task": cfg.cpus_per_task,
            "job_name": cfg.job_name,
        }
        for key in ("partition", "mem", "account", "qos"):
            if getattr(cfg, key) is not None:
                params[key] = getattr(cfg, key)
        if cfg.gpus is not None:
            params["gpus_per_node"] = cfg.gpus
        if cfg.extra_sbatch:
            params["additional_parameters"] = dict(cfg.extra_sbatch)
        # submitit's default warning comes 90 s before the limit, which for a limit of a
        # minute or so is at start-up, before its handler exists: the job then dies of
        # the signal itself. A quarter of the limit, at most 90 s, leaves it time to start.
        params["signal_delay_s"] = min(90, cfg.time * 15)
        ex.update_parameters(**params)
        return ex

    def submit(self, call: TaskCall, deps: Sequence[Any]) -> Submission:
        refuse_deps_pip(
            call,
            "the Slurm executor",
            "Run Ray on the allocation (`qflow "
            "slurm up`) and use the default Ray executor, which builds a "
            "virtualenv with the packages on the job's node; or install them "
            "into the job's environment yourself with DepsBash.",
        )
        done: Future = Future()
        holder: dict[str, Any] = {}
        with self._lock:
            self._queue.append((call, list(deps), done, holder))
            if len(self._queue) == 1:
                threading.Thread(target=self._flush, name="qflow-slurm-submit", daemon=True).start()
        return Submission(done=done, handle=holder)

    def _flush(self) -> None:
        """Submit what queued up in one window: a single job, or one job array."""
        time.sleep(self.config.array_window_s)
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            values = [fetch_inputs(deps) for _, deps, _, _ in batch]
            ex = self._executor()
            if len(batch) == 1:
                jobs = [ex.submit(execute_call, batch[0][0], values[0])]
            else:  # a fan-out with one config: one sbatch for all (submitit map_array)
                jobs = ex.map_array(execute_call, [b[0] for b in batch], values)
        except BaseException as exc:
            for _, _, done, _ in batch:
                done.set_exception(exc)
            return
        for (call, _, done, holder), job in zip(batch, jobs):
            holder["job"] = job
            threading.Thread(
                target=self._finish,
                args=(call, job, done, holder),
                name=f"qflow-slurm-{call.label}",
                daemon=True,
            ).start()

    def _finish(self, call: TaskCall, job: Any, done: Future, holder: dict[str, Any]) -> None:
        try:
            value, outcome = self._wait(call, job, holder)
            outcome.value_ref = ray.put(value)
            outcome.slurm_job_id = str(job.job_id)
            done.set_result(outcome)
        except BaseException as exc:  # handed to the dispatcher, never swallowed
            done.set_exception(exc)

    def _wait(self, call: TaskCall, job: Any, holder: dict[str, Any]) -> tuple[Any, NodeOutcome]:
        cfg = self.config

        def cancelled() -> None:
            if holder.get("cancelled"):
                raise SlurmError(f"Slurm job {job.job_id} for {call.label} was cancelled.")

        def late() -> SlurmError:
            job.cancel(check=False)
            return self._failure(
                call, job, f"did not finish within max_wait_s={cfg.max_wait_s} s; it was cancelled"
            )

        wait_until(job.done, cfg.max_wait_s, interval=cfg.poll_s, check=cancelled, on_timeout=late)
        try:
            return job.result()
        except Exception as exc:
            reason = failure_reason(_state(job), str(exc), cfg.time)
            raise self._failure(call, job, f"{reason}:\n{exc}") from exc

    @staticmethod
    def _failure(call: TaskCall, job: Any, text: str) -> SlurmError:
        err = SlurmError(f"Slurm job {job.job_id} for electron {call.label} {text}")
        setattr(
            err,
            OUTCOME_ATTR,
            NodeOutcome(node_id=call.node_id, error=str(err), slurm_job_id=str(job.job_id)),
        )
        return err

    def cancel(self, submission: Submission) -> None:
        holder = submission.handle
        holder["cancelled"] = True
        job = holder.get("job")
        if job is not None:
            job.cancel(check=False)


def failure_reason(state: str, error: str, time_min: int) -> str:
    """Say why a Slurm job failed, from its sacct state and submitit's error text.

    Slurm warns a job with SIGUSR2 before its time limit. submitit then fails the job
    itself ("timed-out"), often while sacct still says RUNNING; a job the signal reaches
    before submitit's handler is installed dies of it ("User defined signal 2", state
    FAILED). All of these are the time limit.

    Example:
        >>> failure_reason("TIMEOUT", "", 5)
        'hit its Slurm time limit of 5 min (state TIMEOUT)'
    """
    if state.startswith("TIMEOUT") or "timed-out" in error or "User defined signal 2" in error:
        return f"hit its Slurm time limit of {time_min} min (state {state})"
    if state.startswith("CANCELLED"):
        return f"was cancelled (state {state})"
    return f"failed (state {state})"


def _state(job: Any) -> str:
    try:
        return str(job.state)
    except Exception:  # sacct unavailable: unknown is honest
        return "UNKNOWN"
