"""Dependencies an electron needs where it runs: shell commands, pip packages, hooks.

Example:
    >>> import qflow
    >>> @qflow.electron(deps_bash=qflow.DepsBash(["true"]))
    ... def task():
    ...     return 1
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qflow.exceptions import DependencyError, QflowInputError

__all__ = ["DepsBash", "DepsCall", "DepsPip"]


@dataclass(frozen=True)
class DepsBash:
    """Shell commands run, in order, before the electron; the first failure stops it.

    Args:
        commands: one command or a list of them.
    """

    commands: tuple[str, ...] = ()

    def __init__(self, commands: str | Sequence[str] = ()) -> None:
        if isinstance(commands, str):
            commands = [commands]
        bad = [c for c in commands if not isinstance(c, str)]
        if bad:
            raise QflowInputError(
                f"DepsBash takes shell commands as strings; got {bad!r}. "
                "Pass e.g. DepsBash(['pip --version', 'echo ready'])."
            )
        object.__setattr__(self, "commands", tuple(commands))

    def run(self) -> None:
        """Run the commands; raise :class:`DependencyError` naming the one that failed."""
        for command in self.commands:
            proc = subprocess.run(command, shell=True, capture_output=True, text=True)
            if proc.returncode != 0:
                raise DependencyError(
                    f"DepsBash command {command!r} exited with {proc.returncode}, so the "
                    f"electron did not run.\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
                )


@dataclass(frozen=True)
class DepsPip:
    """Pip packages the electron needs, installed by Ray's ``runtime_env``.

    Args:
        packages: requirement strings, e.g. ``["numpy==2.*"]``.
    """

    packages: tuple[str, ...] = ()

    def __init__(self, packages: str | Sequence[str] = ()) -> None:
        if isinstance(packages, str):
            packages = [packages]
        object.__setattr__(self, "packages", tuple(packages))

    def runtime_env(self) -> dict[str, Any]:
        return {"pip": list(self.packages)} if self.packages else {}


@dataclass(frozen=True)
class DepsCall:
    """A function called where the electron runs, before or after it.

    Args:
        func: the hook.
        args: its positional arguments.
        kwargs: its keyword arguments.
        retval_keyword: when set, the hook's return value is passed to the electron
            as this keyword argument (``call_before`` only).
    """

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retval_keyword: str = ""

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise QflowInputError(
                f"DepsCall needs a callable as func; got {type(self.func).__name__} "
                f"{self.func!r}. Pass the function itself: DepsCall(setup, args=[...])."
            )
        object.__setattr__(self, "args", tuple(self.args))

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


def as_calls(value: DepsCall | Callable[..., Any] | Sequence[Any] | None, what: str
             ) -> tuple[DepsCall, ...]:
    """Normalise ``call_before=``/``call_after=``: a DepsCall, a callable, or a list."""
    if value is None:
        return ()
    items = [value] if isinstance(value, DepsCall) or callable(value) else list(value)
    out = []
    for item in items:
        if isinstance(item, DepsCall):
            out.append(item)
        elif callable(item):
            out.append(DepsCall(item))
        else:
            raise QflowInputError(
                f"{what} takes DepsCall objects or callables; got {item!r}. "
                f"Pass e.g. {what}=[qflow.DepsCall(setup)]."
            )
    return tuple(out)
