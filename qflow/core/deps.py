"""Dependencies an electron needs where it runs: shell commands, pip packages, hooks.

Example:
    >>> import qflow
    >>> @qflow.electron(deps_bash=qflow.DepsBash(["true"]))
    ... def task():
    ...     return 1
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qflow.exceptions import DependencyError, QflowInputError
from qflow.secrets.keep import secret_names

__all__ = ["DepsBash", "DepsCall", "DepsPip"]


@dataclass(frozen=True)
class DepsBash:
    """Shell commands run, in order, before the electron; the first failure stops it.

    Args:
        commands: one command or a list of them.
        secrets: secret names the commands need in their environment; they are
            granted to the whole electron call (see :mod:`qflow.secrets`).
    """

    commands: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def __init__(self, commands: str | Sequence[str] = (), secrets: Sequence[str] = ()) -> None:
        if isinstance(commands, str):
            commands = [commands]
        bad = [c for c in commands if not isinstance(c, str)]
        if bad:
            raise QflowInputError(
                f"DepsBash takes shell commands as strings; got {bad!r}. "
                "Pass e.g. DepsBash(['pip --version', 'echo ready'])."
            )
        object.__setattr__(self, "commands", list(commands))  # a list, as in Covalent
        object.__setattr__(self, "secrets", secret_names(secrets))

    def __hash__(self) -> int:
        return hash((tuple(self.commands), self.secrets))

    def run(self) -> None:
        """Run the commands; raise :class:`DependencyError` naming the one that failed."""
        for command in self.commands:
            # os.environ as the electron sees it: with the secrets it was granted
            proc = subprocess.run(
                command, shell=True, capture_output=True, text=True, env=dict(os.environ)
            )
            if proc.returncode != 0:
                raise DependencyError(
                    f"DepsBash command {command!r} exited with {proc.returncode}, so the "
                    f"electron did not run.\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Covalent's serialised form: ``{"type": "DepsBash", "attributes": {...}}``."""
        return {
            "type": "DepsBash",
            "short_name": "bash",
            "attributes": {"commands": list(self.commands)},
        }

    def from_dict(self, data: Mapping[str, Any] | None) -> DepsBash:
        """A DepsBash from :meth:`to_dict`'s form (Covalent's ``DepsBash().from_dict``)."""
        return DepsBash(list(((data or {}).get("attributes") or {}).get("commands", [])))


#: What pip is told when Ray builds a DepsPip environment.
PIP_INSTALL_OPTIONS = ("--disable-pip-version-check", "--only-binary=:all:")


@dataclass(frozen=True)
class DepsPip:
    """Pip packages the electron needs, installed by Ray's ``runtime_env``.

    Args:
        packages: requirement strings, e.g. ``["numpy==2.*"]``.
        reqs_path: a requirements file whose requirements are added to ``packages``
            (read now, on the machine that builds the lattice).
    """

    packages: list[str] = field(default_factory=list)

    def __init__(self, packages: str | Sequence[str] = (), reqs_path: str | None = None) -> None:
        if isinstance(packages, str):
            packages = [packages]
        bad = [p for p in packages if not isinstance(p, str)]
        if bad:
            raise QflowInputError(
                f"DepsPip takes requirement strings such as 'numpy==2.*'; got {bad!r}."
            )
        packages = list(packages)
        if reqs_path is not None:
            try:
                lines = Path(reqs_path).read_text().splitlines()
            except OSError as exc:
                raise QflowInputError(
                    f"DepsPip cannot read reqs_path {reqs_path!r}: {exc.strerror or exc}. "
                    "Pass the path of a requirements.txt that exists here."
                ) from exc
            packages += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
        object.__setattr__(self, "packages", packages)  # a list, as in Covalent

    def __hash__(self) -> int:
        return hash(tuple(self.packages))

    def runtime_env(self) -> dict[str, Any]:
        """Ray's ``runtime_env`` for these packages: a virtualenv of their own, made once
        per package set on each node and cached there, layered over the node's Python.

        Wheels only: a pin with no wheel for the node's Python fails at once with pip's
        own message, instead of building from source for minutes.
        """
        if not self.packages:
            return {}
        return {
            "pip": {
                "packages": list(self.packages),
                "pip_check": False,
                "pip_install_options": list(PIP_INSTALL_OPTIONS),
            }
        }

    def install(self) -> None:
        """Refused: qflow never installs into the interpreter that runs it.

        Raises:
            QflowInputError: always, naming what to use instead.
        """
        raise QflowInputError(
            f"DepsPip({self.packages!r}).install() would pip-install into the Python "
            "that runs qflow, which can break qflow itself. Name it in deps_pip=, "
            "call_before= or call_after= instead: the electron then runs in a virtualenv "
            "of its own with these packages."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "DepsPip",
            "short_name": "pip",
            "attributes": {"packages": list(self.packages)},
        }

    def from_dict(self, data: Mapping[str, Any] | None) -> DepsPip:
        return DepsPip(list(((data or {}).get("attributes") or {}).get("packages", [])))


@dataclass(frozen=True)
class DepsCall:
    """A function called where the electron runs, before or after it.

    Args:
        func: the hook.
        args: its positional arguments.
        kwargs: its keyword arguments.
        retval_keyword: when set, the hook's return value is passed to the electron
            as this keyword argument (``call_before`` only).
        secrets: secret names the hook reads; they are granted to the whole electron
            call (see :mod:`qflow.secrets`).
    """

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retval_keyword: str = ""
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise QflowInputError(
                f"DepsCall needs a callable as func; got {type(self.func).__name__} "
                f"{self.func!r}. Pass the function itself: DepsCall(setup, args=[...])."
            )
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "secrets", secret_names(self.secrets))

    def call(self) -> Any:
        try:
            return self.func(*self.args, **self.kwargs)
        except Exception as exc:
            name = getattr(self.func, "__name__", repr(self.func))
            raise DependencyError(f"DepsCall hook {name!r} raised {exc!r}") from exc


def as_bash(value: DepsBash | str | Sequence[str] | None) -> DepsBash:
    """Normalise the forms ``deps_bash=`` accepts."""
    if value is None:
        return DepsBash()
    return value if isinstance(value, DepsBash) else DepsBash(value)


def as_pip(value: DepsPip | str | Sequence[str] | None) -> DepsPip:
    if value is None:
        return DepsPip()
    return value if isinstance(value, DepsPip) else DepsPip(value)


def split_pip(value: Any) -> tuple[Any, list[str]]:
    """``call_before=``/``call_after=`` without its DepsPip items, and their packages.

    A DepsPip among the hooks joins the electron's own environment (``deps_pip``),
    whether it stands in ``call_before`` or ``call_after``: the packages must exist
    before the electron starts, and they never enter the interpreter running qflow.
    """
    if value is None or isinstance(value, DepsCall | DepsBash) or callable(value):
        return value, []
    items = [value] if isinstance(value, DepsPip) else list(value)
    packages = [p for item in items if isinstance(item, DepsPip) for p in item.packages]
    return [i for i in items if not isinstance(i, DepsPip)], packages


def as_calls(
    value: DepsCall | Callable[..., Any] | Sequence[Any] | None, what: str
) -> tuple[DepsCall, ...]:
    """Normalise ``call_before=``/``call_after=``: a DepsCall, a DepsBash, a callable, or
    a list of them (DepsPip items are taken out first: see :func:`split_pip`)."""
    if value is None:
        return ()
    single = isinstance(value, DepsCall | DepsBash | DepsPip) or callable(value)
    items = [value] if single else list(value)  # type: ignore[arg-type]
    out = []
    for item in items:
        if isinstance(item, DepsCall):
            out.append(item)
        elif isinstance(item, DepsBash):
            out.append(DepsCall(item.run))
        elif callable(item):
            out.append(DepsCall(item))
        else:
            raise QflowInputError(
                f"{what} takes DepsCall, DepsBash or DepsPip objects or callables; got "
                f"{item!r}. "
                f"Pass e.g. {what}=[qflow.DepsCall(setup)]."
            )
    return tuple(out)
