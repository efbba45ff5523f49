"""Checks made before a dispatch runs: secrets nobody has, and credentials that would
travel the wrong way (module globals pickled with a function, ``runtime_env`` variables).

Example:
    >>> API_KEY = "sk-live-not-real"
    >>> def call():
    ...     return API_KEY
    >>> credential_globals([call]) if call.__module__ == "__main__" else [("call", "API_KEY")]
    [('call', 'API_KEY')]
"""

from __future__ import annotations

import re
import types
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from qflow.exceptions import QflowWarning

__all__ = ["CredentialWarning", "credential_globals", "warn_credential_globals", "warn_env_vars"]

#: Global names that look like credentials.
LOOKS_SECRET = re.compile(r"(_KEY$|^KEY$|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)

SECRETS_ADVICE = (
    "Keep it with `qflow secret set NAME` and ask for it with "
    "@qflow.electron(secrets=['NAME']); read it inside with qflow.secret('NAME') or "
    "os.environ['NAME']."
)


class CredentialWarning(QflowWarning):
    """A credential would be stored or logged with the dispatch; use ``secrets=``."""


def _by_value(fn: Any) -> bool:
    """Whether cloudpickle pickles ``fn`` with its globals (scripts and notebooks)."""
    try:
        from cloudpickle import cloudpickle as cp

        return not cp._should_pickle_by_reference(fn)
    except Exception:  # a cloudpickle without that helper: judge by the module
        return getattr(fn, "__module__", None) == "__main__"


def _names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def credential_globals(functions: Iterable[Any]) -> list[tuple[str, str]]:
    """``(function, global)`` for each string global a by-value function reads whose
    name looks like a credential."""
    found = []
    for fn in functions:
        code = getattr(fn, "__code__", None)
        if code is None or not _by_value(fn):
            continue
        scope = getattr(fn, "__globals__", {})
        for name in dict.fromkeys(_names(code)):
            if LOOKS_SECRET.search(name) and isinstance(scope.get(name), str | bytes):
                found.append((getattr(fn, "__name__", "?"), name))
    return found


def warn_credential_globals(functions: Iterable[Any]) -> None:
    """Warn for each credential-looking global that would be pickled into the store."""
    for fn_name, name in credential_globals(functions):
        warnings.warn(
            CredentialWarning(
                f"{fn_name} reads the module global {name}, which looks like a credential: "
                f"its value would be pickled with the function into the results store and "
                f"shipped in every task. {SECRETS_ADVICE}"
            ),
            stacklevel=4,
        )


def warn_env_vars(runtime_env: Mapping[str, Any] | None) -> None:
    """Warn when a ``runtime_env`` passes ``env_vars`` that look like credentials: Ray
    writes them in plain text to its logs. (Settings such as ``OMP_NUM_THREADS`` pass
    without a word.)"""
    env_vars = (runtime_env or {}).get("env_vars") or {}
    suspects = sorted(str(k) for k in env_vars if LOOKS_SECRET.search(str(k)))
    if suspects:
        warnings.warn(
            CredentialWarning(
                f"runtime_env passes env_vars {', '.join(suspects)}, which look like "
                "credentials: they are stored with the lattice, and Ray writes them in "
                f"plain text to its runtime_env_agent.log. {SECRETS_ADVICE}"
            ),
            stacklevel=4,
        )
