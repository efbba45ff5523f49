"""What a qflow client and server agree on: the API's paths, the version handshake
and how errors cross the wire.

Example:
    >>> mismatch({"python": "3.11"}, {"python": "3.12"})
    'python: client 3.11, server 3.12'
    >>> mismatch(local_versions(), local_versions()) is None
    True
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from qflow import exceptions
from qflow.exceptions import QflowError

__all__ = [
    "API",
    "MAX_BODY",
    "VERSION_HEADER",
    "error_body",
    "error_from",
    "local_versions",
    "mismatch",
    "status_for",
]

#: The API's root path; a breaking change gets a new one.
API = "/api/v1"

#: The header each request carries the client's versions in, as JSON.
VERSION_HEADER = "x-qflow-versions"

#: The largest request body the server reads, in bytes (``QFLOW_SERVER_MAX_BODY``).
MAX_BODY = 1 << 30

#: The versions whose difference breaks pickles travelling between the two sides:
#: qflow's own classes, code objects (Python's minor version), cloudpickle's format,
#: and Ray's (its exceptions travel inside node errors).
_CHECKED = ("qflow", "python", "cloudpickle", "ray")


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def local_versions() -> dict[str, str]:
    """This process's versions of what the handshake compares."""
    return {
        "qflow": _dist_version("qflow-runtime"),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "cloudpickle": _dist_version("cloudpickle"),
        "ray": _dist_version("ray"),
    }


def mismatch(client: dict[str, Any], server: dict[str, Any]) -> str | None:
    """The versions that differ, as ``name: client X, server Y`` (None if none do)."""
    diffs = [
        f"{name}: client {client.get(name)}, server {server.get(name)}"
        for name in _CHECKED
        if name in client or name in server
        if client.get(name) != server.get(name)
    ]
    return "; ".join(diffs) or None


def parse_versions(header: str | None) -> dict[str, Any]:
    """The versions a request's header carries ({} when missing or unreadable)."""
    try:
        value = json.loads(header or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


#: HTTP status per error class; the most specific class listed wins.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (exceptions.ServerAuthError, 401),
    (exceptions.DispatchNotFoundError, 404),
    (exceptions.VersionMismatchError, 409),
    (exceptions.DispatchTimeoutError, 408),
    (exceptions.QflowInputError, 400),
    (exceptions.GraphBuildError, 400),
    (exceptions.StoreFullError, 507),
    (exceptions.ClusterError, 503),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status that carries ``exc``."""
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


def error_body(exc: BaseException) -> dict[str, str]:
    """``exc`` as JSON: its message and, for qflow's own errors, its class name."""
    kind = type(exc).__name__ if isinstance(exc, QflowError) else "QflowError"
    return {"error": str(exc) or repr(exc), "type": kind}


def error_from(status: int, body: bytes, url: str) -> QflowError:
    """The qflow error a server's error response carries, named by class: only classes
    of :mod:`qflow.exceptions` are made, never anything the body names elsewhere."""
    try:
        data = json.loads(body)
        message, kind = str(data["error"]), str(data.get("type", ""))
    except (ValueError, KeyError, TypeError):
        message, kind = body.decode(errors="replace").strip()[:2000], ""
    cls = getattr(exceptions, kind, None) if kind in exceptions.__all__ else None
    if cls is None or not issubclass(cls, QflowError):
        cls = {401: exceptions.ServerAuthError, 404: exceptions.DispatchNotFoundError}.get(
            status, exceptions.ServerError
        )
        message = f"The qflow server at {url} answered {status}: {message}"
    return cls(message)
