"""Executors: where electrons run. ``ray`` (default), ``local``, and ``slurm``. (The
``loop`` executor, on which qflow's variational loops run their chunks, is in the loops
wing, :mod:`qflow.loops.executor`, and registers itself when a loop is imported.)"""

from __future__ import annotations

from typing import Any

from qflow.exceptions import QflowConfigError
from qflow.executors.base import Executor, InPack, Submission
from qflow.executors.local import LocalExecutor
from qflow.executors.ray import RayExecutor, ray_options
from qflow.executors.slurm import SlurmConfig, SlurmExecutor

__all__ = [
    "Executor",
    "InPack",
    "LocalExecutor",
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


def ray_request(options: Any, sublattice: bool = False) -> dict[str, float] | None:
    """The bundle a node with ``options`` asks Ray for (``CPU``, ``GPU`` and custom
    resources), or None if its executor is not Ray; see :func:`ray_options`."""
    try:
        executor = resolve_executor(options.executor)
    except QflowConfigError:  # an unknown name fails its node when it runs
        return None
    if not isinstance(executor, RayExecutor):
        return None  # local and Slurm electrons ask Ray for nothing
    opts = ray_options(options, sublattice)
    request = {"CPU": float(opts.get("num_cpus", 1))}
    request.update({k: float(v) for k, v in opts.get("resources", {}).items()})
    if opts.get("num_gpus"):
        request["GPU"] = float(opts["num_gpus"])
    return request


def check_feasible(graph: Any) -> None:
    """Fail before a dispatch starts when one of its Ray tasks could never be scheduled.

    Raises:
        InfeasibleResourceError: naming the electron, what it asks for and what the
            largest node offers.
    """
    from qflow.core.graph import VIRTUAL_KINDS, NodeKind
    from qflow.core.options import DEFAULT_OPTIONS
    from qflow.executors.placement import ensure_feasible

    seen: set[tuple[Any, ...]] = set()
    judged: set[tuple[int, bool]] = set()  # the nodes of a fan-out share one options object
    for node in graph.nodes:
        if node.kind in VIRTUAL_KINDS:
            continue
        opts = node.options or DEFAULT_OPTIONS
        same = (id(opts), node.kind is NodeKind.SUBLATTICE)
        if same in judged:
            continue
        judged.add(same)
        request = ray_request(opts, node.kind is NodeKind.SUBLATTICE)
        if request is None:
            continue
        key = tuple(sorted(request.items()))
        if key in seen:
            continue
        seen.add(key)
        ensure_feasible(request, f"Electron {node.label}")
