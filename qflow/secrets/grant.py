"""Granting secrets to one electron call, where it runs: fetched by name at run time,
visible in ``os.environ`` and through :func:`secret` to the calling thread only for the
call, and redacted from what the call prints or raises.

The value never travels with the task: the task carries a :class:`SecretsGrant` (the
names, and where the dispatcher keeps them). On the dispatcher's machine the worker
reads the keep; on another node it asks the courier actor the dispatcher started
(:mod:`qflow.secrets.courier`), whose answer Ray returns inline, never spilled.

Example:
    >>> import os
    >>> lease = SecretLease(None)
    >>> with lease:
    ...     pass
    >>> lease.redact("nothing to hide")
    'nothing to hide'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qflow.exceptions import QflowError
from qflow.secrets.courier import SecretsGrant, ask_courier
from qflow.secrets.keep import SecretKeep
from qflow.secrets.providers import resolve

__all__ = ["SecretLease", "SecretsGrant", "current_grant", "redact_text", "secret"]


_local = threading.local()  # .values: the secrets granted to this thread's call


def secret(name: str) -> str:
    """The value of secret ``name``, inside an electron that asked for it.

    Example:
        >>> import qflow
        >>> @qflow.electron(secrets=["IONQ_API_KEY"])
        ... def submit(circuit):
        ...     key = qflow.secret("IONQ_API_KEY")
        ...     return len(key)

    Raises:
        QflowError: the running electron did not ask for ``name`` (or no electron runs
            in this thread); it names the declaration to add.
    """
    values: Mapping[str, str] = getattr(_local, "values", None) or {}
    if name in values:
        return values[name]
    raise QflowError(
        f"Secret {name!r} was not granted here: only an electron that asks for it gets "
        f'it. Add secrets=["{name}"] to its @qflow.electron (or to the @qflow.lattice, '
        "for all its electrons), and set it with `qflow secret set " + name + "`."
    )


class _GrantedEnviron(os._Environ):
    """``os.environ`` with the calling thread's granted secrets laid over it. It shares
    the real mapping, so every other read and write behaves as before."""

    def __init__(self, base: Any) -> None:
        super().__init__(
            base._data, base.encodekey, base.decodekey, base.encodevalue, base.decodevalue
        )

    @staticmethod
    def _granted() -> Mapping[str, str]:
        return getattr(_local, "values", None) or {}

    def __getitem__(self, key: str) -> str:
        granted = self._granted()
        if key in granted:
            return granted[key]
        value: str = super().__getitem__(key)
        return value

    def __iter__(self) -> Any:
        granted = self._granted()
        for key in super().__iter__():
            if key not in granted:
                yield key
        yield from granted

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


_install_lock = threading.Lock()


def _install() -> None:
    with _install_lock:
        if not isinstance(os.environ, _GrantedEnviron):
            # the same mapping underneath, looked up through the grant first
            os.environ = _GrantedEnviron(os.environ)  # noqa: B003


def _fetch(grant: SecretsGrant) -> dict[str, str]:
    """The granted values, read here or asked of the courier on the dispatcher's node."""
    here = None
    if grant.courier is not None:
        import ray

        if ray.is_initialized():
            here = ray.get_runtime_context().get_node_id()
        if here is not None and here != grant.node_id:
            return ask_courier(grant)
    return resolve(grant.names, SecretKeep(Path(grant.keep)))


def current_grant() -> SecretsGrant | None:
    """The grant of the call running in this thread, to hand on to work it starts in
    another process (a loop's actor), which then fetches the same secrets itself."""
    grant: SecretsGrant | None = getattr(_local, "grant", None)
    return grant


def redact_text(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each value replaced by ``[secret NAME]``, longest value first."""
    for name, value in sorted(values.items(), key=lambda nv: -len(nv[1])):
        if value and value in text:
            text = text.replace(value, f"[secret {name}]")
    return text


class SecretLease:
    """The secrets of one call: fetched on entry and laid over ``os.environ`` for the
    calling thread until exit; their values stay for :meth:`redact` until
    :meth:`close`, so output written at the end is still redacted.

    Args:
        grant: what the task carries, or None for a call that asked for nothing.
    """

    def __init__(self, grant: SecretsGrant | None) -> None:
        self.grant = grant
        self.values: dict[str, str] = {}
        self._before: Mapping[str, str] | None = None
        self._before_grant: SecretsGrant | None = None

    def __enter__(self) -> SecretLease:
        if self.grant is None or not self.grant.names:
            return self
        self.values = _fetch(self.grant)
        _install()
        self._before = getattr(_local, "values", None)
        self._before_grant = getattr(_local, "grant", None)
        _local.values = {**(self._before or {}), **self.values}
        _local.grant = self.grant
        return self

    def __exit__(self, *exc: object) -> None:
        if self.values:
            _local.values, _local.grant = self._before, self._before_grant

    @property
    def active(self) -> bool:
        return bool(self.values)

    def redact(self, text: str) -> str:
        """``text`` with the granted values replaced by ``[secret NAME]``."""
        return redact_text(text, self.values) if self.values else text

    def scrub(self, exc: BaseException) -> None:
        """Redact the granted values from ``exc``'s message and those it chains to, in
        place, keeping each exception's type (retries match on it)."""
        if not self.values:
            return
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            try:
                current.args = tuple(
                    self.redact(a) if isinstance(a, str) else a for a in current.args
                )
                for attr in ("msg", "message", "strerror", "filename"):
                    value = getattr(current, attr, None)
                    if isinstance(value, str):
                        setattr(current, attr, self.redact(value))
            except Exception:  # a read-only attribute: the traceback text is redacted
                pass
            current = current.__cause__ or current.__context__

    def refuse_in(self, blob: bytes, what: str) -> None:
        """Raise if ``blob`` (an output about to be stored) holds a granted value."""
        for name, value in self.values.items():
            if value.encode() in blob:
                raise QflowError(
                    f"{what} contains the value of secret {name}, and qflow stores no "
                    "secret: return what you computed with it (a result, a job id), not "
                    "the credential itself."
                )

    def close(self) -> None:
        self.values = {}
