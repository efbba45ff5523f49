"""The rest of Covalent's top-level API: ``sync``, ``get_context``, and the config calls.

Covalent keeps settings in ``covalent.conf`` (server address, executor defaults);
qflow reads its few settings from the environment (see
:class:`qflow.settings.Settings`), and takes ``dispatcher.address`` and
``dispatcher.port`` as the qflow server to send work to. ``get_config`` shows them under Covalent-like keys;
``set_config`` keeps values for this process and warns about keys qflow does not use.

Example:
    >>> import qflow as ct
    >>> ct.get_config("qflow.home") == str(ct.settings.Settings.from_env().home)
    True
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from qflow.core.context import TaskContext, get_context
from qflow.exceptions import QflowWarning

__all__ = ["TaskContext", "get_config", "get_context", "reload_config", "set_config", "sync"]


def sync(dispatch_id: str | Iterable[str] | None = None) -> None:
    """Wait until the given dispatches (or every dispatch this process started) end."""
    from qflow._api import get_result
    from qflow.runtime.process import current

    if dispatch_id is None:
        ids = list(current().local)
    elif isinstance(dispatch_id, str):
        ids = [dispatch_id]
    else:
        ids = list(dispatch_id)
    for one in ids:
        get_result(one, wait=True)


_OVERRIDES: dict[str, Any] = {}


def _current() -> dict[str, Any]:
    from qflow.settings import Settings

    settings = Settings.from_env()
    values = {f"qflow.{f.name}": getattr(settings, f.name) for f in dataclasses.fields(settings)}
    values = {
        k: str(v) if not isinstance(v, int | float | bool | type(None)) else v
        for k, v in values.items()
    }
    return {**values, **_OVERRIDES}


def get_config(key: str | None = None) -> Any:
    """All settings as a flat ``{"qflow.home": ..., ...}`` dict, or the one under ``key``.

    Raises:
        KeyError: no such key (the message lists the known ones).
    """
    values = _current()
    if key is None:
        return values
    if key not in values:
        raise KeyError(f"No config key {key!r}; qflow has {sorted(values)}.")
    return values[key]


def set_config(new_config: Mapping[str, Any] | str, new_value: Any = None) -> None:
    """Keep ``key = value`` for this process (Covalent's ``set_config``). Keys that
    change nothing in qflow (Covalent's server and executor settings) give a
    :class:`~qflow.exceptions.QflowWarning`; set ``QFLOW_*`` variables or call
    :func:`qflow.init` to change what qflow does."""
    items = dict(new_config) if isinstance(new_config, Mapping) else {new_config: new_value}
    known = set(_current()) | set(_DISPATCHER_KEYS)
    unused = sorted(k for k in items if k not in known)
    if unused:
        warnings.warn(
            f"qflow does not use the config keys {unused} (Covalent settings); "
            "they are kept but change nothing. qflow reads QFLOW_HOME, RAY_ADDRESS "
            "and QFLOW_NUM_CPUS, or qflow.init(...).",
            QflowWarning,
            stacklevel=2,
        )
    _OVERRIDES.update(items)
    if any(k in items for k in _DISPATCHER_KEYS):
        _choose_server()


#: Covalent's keys for its dispatch server: here, the qflow server to send work to.
_DISPATCHER_KEYS = ("dispatcher.address", "dispatcher.port")


def _choose_server() -> None:
    import urllib.parse

    from qflow.remote.client import configure, server_url

    host = _OVERRIDES.get("dispatcher.address")
    port = _OVERRIDES.get("dispatcher.port")
    if not host:
        configure(None)
        return
    url = server_url(str(host))
    if port is not None and urllib.parse.urlsplit(url).port is None:
        url = f"{url}:{int(port)}"
    configure(url)


def reload_config() -> None:
    """Forget :func:`set_config` values (qflow re-reads its environment on every use)."""
    _OVERRIDES.clear()
    _choose_server()
