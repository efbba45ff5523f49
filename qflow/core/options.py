"""Per-electron execution options, validated on construction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qflow.core.arguments import one_or_many as one_or_many
from qflow.core.deps import DepsBash, DepsCall, DepsPip, as_bash, as_calls, as_pip, split_pip
from qflow.exceptions import QflowConfigError
from qflow.secrets.keep import secret_names


@dataclass(frozen=True)
class ElectronOptions:
    """Where and how an electron runs. ``None`` means "inherit from the lattice".

    Args:
        executor: ``"ray"`` (default), ``"local"``, ``"slurm"``, or an Executor instance.
        num_cpus: CPUs Ray reserves for the task.
        num_gpus: GPUs Ray reserves for the task.
        resources: custom Ray resources, e.g. ``{"qpu:braket-us-east-1": 1}``.
        max_retries: retries after a worker crash (and after exceptions, see below).
        retry_exceptions: ``True``, or a list of exception types worth retrying.
        runtime_env: a Ray ``runtime_env`` dict.
        deps_bash, deps_pip, call_before, call_after: see :mod:`qflow.deps`.
        files: file transfers around the electron, see :mod:`qflow.fs`.
        pack: ``N`` (an int >= 2) runs up to N ready calls of this electron in one Ray
            task, one after another, each still its own node; False or None (default)
            runs each call as its own task.
        secrets: names of the secrets the electron is granted where it runs (see
            :mod:`qflow.secrets`); a lattice's are added to each electron's.
    """

    executor: Any = None
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: Mapping[str, float] | None = None
    max_retries: int | None = None
    retry_exceptions: bool | tuple[type[BaseException], ...] | None = None
    runtime_env: Mapping[str, Any] | None = None
    deps_bash: DepsBash = field(default_factory=DepsBash)
    deps_pip: DepsPip = field(default_factory=DepsPip)
    call_before: tuple[DepsCall, ...] = ()
    call_after: tuple[DepsCall, ...] = ()
    #: ``qflow.fs.FileTransfer`` objects run where the electron runs (see :mod:`qflow.fs`).
    files: tuple[Any, ...] = ()
    #: Secret names; values are fetched where the electron runs (:mod:`qflow.secrets`).
    secrets: tuple[str, ...] = ()
    #: Calls per Ray task for short electrons (see :mod:`qflow.executors.ray`).
    pack: bool | int | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ElectronOptions:
        """Build from decorator keywords, normalising deps and rejecting unknown names."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise QflowConfigError(
                f"Unknown electron option(s): {', '.join(unknown)}. Valid options are: "
                f"{', '.join(sorted(valid))}."
            )
        kwargs["deps_bash"] = as_bash(kwargs.get("deps_bash"))
        before, pip_before = split_pip(kwargs.get("call_before"))
        after, pip_after = split_pip(kwargs.get("call_after"))
        pip = as_pip(kwargs.get("deps_pip"))
        if pip_before or pip_after:
            pip = DepsPip([*pip.packages, *pip_before, *pip_after])
        kwargs["deps_pip"] = pip
        kwargs["call_before"] = as_calls(before, "call_before")
        kwargs["call_after"] = as_calls(after, "call_after")
        if "files" in kwargs:
            from qflow.core.fs import as_transfers

            kwargs["files"] = as_transfers(kwargs["files"])
        if kwargs.get("runtime_env"):
            from qflow.secrets.checks import warn_env_vars

            warn_env_vars(kwargs["runtime_env"])
        # What hooks, deps and the executor ask for is granted to the whole call.
        asked = [
            *secret_names(kwargs.get("secrets") or ()),
            *kwargs["deps_bash"].secrets,
            *(n for hook in (*kwargs["call_before"], *kwargs["call_after"]) for n in hook.secrets),
            *_executor_secrets(kwargs.get("executor")),
        ]
        if asked or "secrets" in kwargs:
            kwargs["secrets"] = tuple(dict.fromkeys(asked))
        retry = kwargs.get("retry_exceptions")
        if isinstance(retry, list | tuple):
            kwargs["retry_exceptions"] = tuple(retry)
        return cls(**kwargs)

    def __post_init__(self) -> None:
        problems = []
        for name in ("num_cpus", "num_gpus", "max_retries"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                problems.append(f"{name} must be a number >= 0; got {value!r}")
        if self.pack is not None and not (
            isinstance(self.pack, bool) or (isinstance(self.pack, int) and self.pack >= 1)
        ):
            problems.append(
                f"pack is the number of calls to run in one Ray task (an int >= 1), or "
                f"False; got {self.pack!r}"
            )
        if self.resources is not None and not isinstance(self.resources, Mapping):
            problems.append(f"resources must be a dict of name -> amount; got {self.resources!r}")
        if self.runtime_env is not None and not isinstance(self.runtime_env, Mapping):
            problems.append(f"runtime_env must be a dict; got {self.runtime_env!r}")
        elif self.secrets and isinstance((self.runtime_env or {}).get("env_vars"), Mapping):
            # Ray writes a runtime_env's env_vars to its logs in plain text: a name that
            # is also a secret must never travel that way, whatever value it is given.
            both = sorted(set(self.runtime_env["env_vars"]) & set(self.secrets))  # type: ignore[index]
            if both:
                problems.append(
                    f"{', '.join(both)} is both a secret and a runtime_env env_var; Ray logs "
                    "env_vars in plain text. Drop it from env_vars: secrets= puts it in "
                    "os.environ for the call"
                )
        if self.executor is not None and not isinstance(self.executor, str):
            # A name is looked up when the node runs: as in Covalent, an unknown one
            # fails that node (with the valid names), not the import of the module.
            # An object is judged by its shape, so that the options (which the worker
            # side reads) never import the executors that run them: a qflow Executor
            # submits; a Covalent plugin carries the marker qflow.executor sets.
            executor = self.executor
            submits = callable(getattr(executor, "submit", None))
            plugin = getattr(type(executor), "__qflow_plugin__", False) is True
            if not submits and not plugin:
                problems.append(
                    f"executor must be a name such as 'ray', an Executor instance or a "
                    f"Covalent executor plugin; got {type(self.executor).__name__} "
                    f"{self.executor!r}"
                )
        if problems:
            raise QflowConfigError("Invalid electron options:\n  - " + "\n  - ".join(problems))

    def merged_over(self, base: ElectronOptions) -> ElectronOptions:
        """These options, with unset fields taken from ``base``.

        As in Covalent, an electron's own ``deps_bash``, ``deps_pip``, ``call_before``
        and ``call_after`` replace the lattice's; the lattice's apply to electrons that
        set none.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(base, f.name)
            if f.name == "secrets":  # the lattice's apply to all its electrons
                out[f.name] = tuple(dict.fromkeys((*theirs, *mine)))
            elif f.name in ("call_before", "call_after", "files"):
                out[f.name] = mine or theirs
            elif f.name == "deps_bash":
                out[f.name] = mine if mine.commands else theirs
            elif f.name == "deps_pip":
                out[f.name] = mine if mine.packages else theirs
            else:
                out[f.name] = theirs if mine is None else mine
        return ElectronOptions(**out)

    def full_runtime_env(self) -> dict[str, Any]:
        """``runtime_env`` with the DepsPip packages added to its pip environment."""
        env = dict(self.runtime_env or {})
        pip = self.deps_pip.runtime_env()
        if pip:
            mine = env.get("pip")
            if isinstance(mine, Mapping):  # Ray's dict form: keep its own options
                env["pip"] = {
                    **mine,
                    "packages": [*mine.get("packages", []), *pip["pip"]["packages"]],
                }
            else:
                env["pip"] = {**pip["pip"], "packages": [*(mine or []), *pip["pip"]["packages"]]}
        return env


def _executor_secrets(executor: Any) -> tuple[str, ...]:
    names = getattr(executor, "secrets", None) if not isinstance(executor, str) else None
    return tuple(names) if isinstance(names, tuple | list) else ()


DEFAULT_OPTIONS = ElectronOptions()
