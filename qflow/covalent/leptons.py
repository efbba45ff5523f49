"""Tasks written in other languages: Covalent's ``ct.Lepton`` and ``ct.leptons.bash``.

A lepton is an electron whose body is not Python: a shell command, or a function in
a C shared library called through ``ctypes``. Inside a lattice it is a node like any
other electron, with the same options (executor, deps, ``files``, resources).

Example:
    >>> import ctypes, qflow as ct
    >>> libc_abs = ct.Lepton("C", library_name="libc.so.6", function_name="abs",
    ...                      argtypes=[(ctypes.c_int, ct.Lepton.INPUT)],
    ...                      restype=ctypes.c_int)
    >>> libc_abs(-7)  # outside a lattice: called at once
    7
    >>> @ct.leptons.bash
    ... def greet(name):
    ...     return f"echo hello {name}"
    >>> greet("qflow")  # the command's stdout went to this process's stdout
    hello qflow
"""

from __future__ import annotations

import ctypes
import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from qflow.core.options import ElectronOptions
from qflow.electron import Electron
from qflow.exceptions import DependencyError, QflowInputError

__all__ = ["Lepton", "bash"]

_LANGUAGES = ("bash", "c", "python")


class _BashCall:
    """Runs the command ``make_command(*args, **kwargs)`` returns, in bash."""

    def __init__(self, make_command: Callable[..., str], named_outputs: Sequence[str]) -> None:
        self.make_command, self.named_outputs = make_command, tuple(named_outputs)
        self.__name__ = getattr(make_command, "__name__", "bash")
        self.__doc__ = getattr(make_command, "__doc__", None)
        # What callers see of the parameters (files=, a call_before retval_keyword) is
        # the command builder's own, not this wrapper's *args/**kwargs.
        try:
            self.__signature__ = inspect.signature(make_command)
        except (TypeError, ValueError):  # a builtin without one: take anything
            pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command = self.make_command(*args, **kwargs)
        if not isinstance(command, str):
            raise QflowInputError(
                f"Bash lepton {self.__name__} must return a shell command "
                f"string; it returned {type(command).__name__} {command!r}."
            )
        marker = "__qflow_outputs__"
        script = command
        if self.named_outputs:  # print the named variables after the user's command
            script += f"\necho {marker}\n" + "\n".join(
                f'printf "%s\\n" "${{{name}}}"' for name in self.named_outputs
            )
        # os.environ as the electron sees it: with the secrets it asked for (secrets=)
        proc = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=dict(os.environ)
        )
        out, _, values = proc.stdout.partition(f"{marker}\n")
        sys.stdout.write(out)  # the node's captured stdout/stderr
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise DependencyError(
                f"Bash lepton {self.__name__} exited with "
                f"{proc.returncode}: {command!r}\n{proc.stderr.strip()}"
            )
        if not self.named_outputs:
            return None
        found = values.splitlines()
        found += [""] * (len(self.named_outputs) - len(found))
        return found[0] if len(self.named_outputs) == 1 else tuple(found)


class _CCall:
    """Calls ``function_name`` in ``library_name`` through ctypes."""

    def __init__(
        self,
        library_name: str,
        function_name: str,
        argtypes: Sequence[tuple[Any, int]],
        restype: Any,
    ) -> None:
        self.library_name, self.function_name = library_name, function_name
        # ctypes' pointer and array types do not pickle: ship their descriptions
        self.argtypes = [(_describe(t), mode) for t, mode in argtypes]
        self.restype = None if restype is None else _describe(restype)
        self.__name__ = function_name

    def __call__(self, *args: Any) -> Any:
        try:
            lib = ctypes.CDLL(self.library_name)
            fn = getattr(lib, self.function_name)
        except (OSError, AttributeError) as exc:
            raise DependencyError(
                f"Lepton cannot load {self.function_name} from {self.library_name}: {exc}"
            ) from exc
        fn.restype = None if self.restype is None else _rebuild(self.restype)
        inputs = iter(args)
        c_args, outputs = [], []
        for spec, mode in self.argtypes:
            ctype = _rebuild(spec)
            pointee = getattr(ctype, "_type_", None) if _is_pointer(ctype) else None
            base = pointee if pointee is not None else ctype
            if mode == Lepton.OUTPUT:
                value = base()
            else:
                given = next(inputs)
                value = base(*given) if issubclass(base, ctypes.Array) else base(given)
            if mode != Lepton.INPUT:
                outputs.append(value)
            c_args.append(ctypes.byref(value) if pointee is not None else value)
        returned = fn(*c_args)
        if not outputs:
            return returned
        values = [list(v) if isinstance(v, ctypes.Array) else v.value for v in outputs]
        return values[0] if len(values) == 1 else tuple(values)


def _describe(ctype: Any) -> tuple[Any, ...]:
    """A picklable description of a ctypes type: ``("c_int",)``, ``("*", inner)`` for a
    pointer, ``("[]", inner, n)`` for an array."""
    if _is_pointer(ctype):
        return ("*", _describe(ctype._type_))
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        return ("[]", _describe(ctype._type_), ctype._length_)
    name = getattr(ctype, "__name__", None)
    if name is None or getattr(ctypes, name, None) is not ctype:
        raise QflowInputError(
            f"Lepton argtypes use ctypes' own types (ctypes.c_int, "
            f"ctypes.POINTER(ctypes.c_double), ctypes.c_double * 3); got "
            f"{ctype!r}."
        )
    return (name,)


def _rebuild(spec: tuple[Any, ...]) -> Any:
    if spec[0] == "*":
        return ctypes.POINTER(_rebuild(spec[1]))
    if spec[0] == "[]":
        return _rebuild(spec[1]) * spec[2]
    return getattr(ctypes, spec[0])


def _is_pointer(ctype: Any) -> bool:
    return isinstance(ctype, type) and issubclass(ctype, ctypes._Pointer)


class Lepton(Electron):
    """An electron written in another language.

    Args:
        language: ``"C"`` (a shared-library function through ctypes), ``"bash"`` (with
            ``command``: a format string of the arguments), or ``"python"``.
        library_name: the shared library (``.so``), for C.
        function_name: the function in it (or a Python callable's name).
        argtypes: ``[(ctype, Lepton.INPUT | OUTPUT | INPUT_OUTPUT), ...]``; OUTPUT and
            INPUT_OUTPUT arguments are pointers (``ctypes.POINTER(ctypes.c_int)``) or
            arrays, and their final values are returned (one value, or a tuple).
        restype: the C return type (returned when there are no outputs).
        command: for bash, e.g. ``"echo {x} > out.txt"``, formatted with the arguments.
        named_outputs: for bash, shell variables whose values are returned.
        display_name: the node's name.
        **options: electron options (``executor``, ``deps_bash``, ``files``, ...).
    """

    INPUT, OUTPUT, INPUT_OUTPUT = 0, 1, 2

    def __init__(
        self,
        language: str = "python",
        *,
        library_name: str = "",
        function_name: str = "",
        argtypes: Sequence[tuple[Any, int]] = (),
        restype: Any = None,
        command: str = "",
        named_outputs: Sequence[str] = (),
        display_name: str = "",
        **options: Any,
    ) -> None:
        lang = str(language).lower()
        if lang not in _LANGUAGES:
            raise QflowInputError(
                f"Lepton language is one of {', '.join(_LANGUAGES)}; got {language!r}."
            )
        bad = [
            a
            for a in argtypes
            if not (
                isinstance(a, tuple)
                and len(a) == 2
                and a[1] in (self.INPUT, self.OUTPUT, self.INPUT_OUTPUT)
            )
        ]
        if bad:
            raise QflowInputError(
                f"argtypes are (ctype, Lepton.INPUT/OUTPUT/INPUT_OUTPUT) pairs; got {bad!r}."
            )
        if lang == "c":
            if not library_name or not function_name:
                raise QflowInputError("A C lepton needs library_name= (a .so) and function_name=.")
            fn: Any = _CCall(library_name, function_name, argtypes, restype)
        elif lang == "bash":
            if not command:
                raise QflowInputError(
                    "A bash lepton needs command=, e.g. 'echo {x}', or use "
                    "@ct.leptons.bash on a function returning the command."
                )
            fn = _BashCall(command.format, named_outputs)
            fn.__name__ = display_name or "bash"
        else:
            raise QflowInputError("A Python task is an electron: use @ct.electron.")
        super().__init__(fn, ElectronOptions.from_kwargs(**options))
        self.__name__ = display_name or fn.__name__


def bash(
    _func: Callable[..., str] | None = None,
    *,
    display_name: str = "",
    named_outputs: Sequence[str] = (),
    **options: Any,
) -> Any:
    """Make a function that returns a shell command an electron that runs it in bash.

    Args:
        _func: the function (when used without parentheses).
        display_name: the node's name (default: the function's).
        named_outputs: shell variables whose values the node returns (one: a string;
            several: a tuple). Without them the node returns None; what the command
            prints is the node's stdout and stderr.
        **options: electron options (``executor``, ``deps_bash``, ``files``, ...).
    """

    def make(fn: Callable[..., str]) -> Electron:
        call = _BashCall(fn, named_outputs)
        electron = Electron(call, ElectronOptions.from_kwargs(**options))
        electron.__name__ = display_name or call.__name__
        return electron

    return make if _func is None else make(_func)
