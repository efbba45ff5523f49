"""Executors: where electrons run. ``ray`` (default), ``local``, and ``slurm``; and
``loop``, which qflow's variational loops use for their chunks."""

from __future__ import annotations

from typing import Any

from qflow.exceptions import QflowConfigError
from qflow.executors.base import Executor, Submission
from qflow.executors.local import LocalExecutor
from qflow.executors.loop import LoopExecutor
from qflow.executors.ray import RayExecutor
from qflow.executors.slurm import SlurmConfig, SlurmExecutor

__all__ = [
    "Executor",
    "LocalExecutor",
    "LoopExecutor",
    "RayExecutor",
    "SlurmConfig",
    "SlurmExecutor",
    "Submission",
    "executor_name",
    "resolve_executor",
]

_instances: dict[str, Executor] = {}


def default_executor_name() -> str:
    """The available executor with the highest affinity (decided once per process:
    affinities probe the machine, e.g. for ``sbatch``)."""
    global _default
    if _default is None or _default[0] != len(Executor.registry):  # a new executor class
        best = max(Executor.registry.values(), key=lambda c: c.affinity()).name()
        _default = (len(Executor.registry), best)
    return _default[1]


_default: tuple[int, str] | None = None


def executor_name(spec: Any) -> str:
    """The name a node's executor is recorded under."""
    if spec is None:
        return default_executor_name()
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Executor):
        return type(spec).name()
    return type(spec).__name__  # a Covalent-style plugin


def resolve_executor(spec: Any) -> Executor:
    """An Executor instance for a name, an instance, a Covalent-style plugin (run inside
    a Ray task), or None (the default).

    Raises:
        QflowConfigError: an unknown name (the message lists the valid ones).
    """
    if isinstance(spec, Executor):
        return spec
    name = default_executor_name() if spec is None else spec
    cls = Executor.registry.get(name) if isinstance(name, str) else None
    if cls is None:  # off the hot path: plugins and errors only
        from qflow.executor import DASK_ADVICE, is_plugin

        if is_plugin(spec):
            return resolve_executor("ray")
        if isinstance(name, str) and name.lower() == "dask":
            raise QflowConfigError(f"Unknown executor 'dask'. {DASK_ADVICE}")
        valid = ", ".join(sorted(n for n, c in Executor.registry.items() if c.listed))
        raise QflowConfigError(
            f"Unknown executor {spec!r}. Valid executors are: {valid}. Pass one of these "
            "names, an Executor instance, or a Covalent executor plugin (a "
            "qflow.executor.BaseExecutor) as executor=."
        )
    if name not in _instances:
        _instances[name] = cls()
    return _instances[name]
