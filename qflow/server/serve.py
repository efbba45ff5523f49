"""Running the qflow server: the web UI and the API on one address, optionally over
TLS, in a process joined to the ``qflow start`` head of its ``QFLOW_HOME``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from qflow.exceptions import QflowConfigError
from qflow.remote import protocol

__all__ = ["parse_listen", "plain_http_warning", "server_app", "serve"]


def plain_http_warning(host: str, tls: bool) -> str | None:
    """What to tell the operator of a server whose token would cross a network in clear.

    Example:
        >>> plain_http_warning("127.0.0.1", tls=False) is None
        True
        >>> plain_http_warning("0.0.0.0", tls=False).startswith("warning: serving plain HTTP")
        True
    """
    from qflow.ui.security import is_loopback

    if tls or is_loopback(host):
        return None
    return (
        f"warning: serving plain HTTP on {host}: the token and all data cross the "
        "network unencrypted. Pass --certfile/--keyfile, or reach the server through "
        "an SSH tunnel (ray attach --port-forward) with --listen 127.0.0.1:PORT."
    )


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``.

    Example:
        >>> parse_listen("0.0.0.0:48008")
        ('0.0.0.0', 48008)
        >>> parse_listen("[::1]:9000")
        ('::1', 9000)
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise QflowConfigError(
            f"--listen takes HOST:PORT, e.g. 127.0.0.1:48008 or 0.0.0.0:48008; got {value!r}."
        )
    return host.strip("[]"), int(port)


def server_app(store: Any, host: str, port: int, token: str, max_body: int) -> Any:
    """The UI at ``/`` and the API at :data:`~qflow.remote.protocol.API`, one token."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from qflow.server.api import api_app
    from qflow.ui.app import create_app
    from qflow.ui.security import Guard

    ui = create_app(store, Guard.for_bind(host, port, token))
    return Starlette(
        routes=[Mount(protocol.API, app=api_app(store, token, max_body)), Mount("/", app=ui)]
    )


def serve(
    home: Path,
    host: str,
    port: int,
    token: str,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """Serve until stopped. Dispatches go to the head's dispatcher service, so they
    outlive this process; this process never forwards to another server."""
    import uvicorn

    from qflow.core.text import url_host
    from qflow.remote.client import serve_locally
    from qflow.runtime.process import current
    from qflow.ui.app import KEEP_ALIVE_S, timed_protocol

    serve_locally()
    if (certfile is None) != (keyfile is None):
        raise QflowConfigError("--certfile and --keyfile go together: pass both, or neither.")
    max_body = int(os.environ.get("QFLOW_SERVER_MAX_BODY", protocol.MAX_BODY))
    rt = current()
    rt.service()  # joined now: the first client's dispatch does not wait for it
    scheme = "https" if certfile else "http"
    warning = plain_http_warning(host, tls=certfile is not None)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    print(f"qflow server at {scheme}://{url_host(host)}:{port} (home {home})", flush=True)
    uvicorn.run(
        server_app(rt.store, host, port, token, max_body),
        host=host,
        port=port,
        log_level="warning",
        http=timed_protocol(),
        timeout_keep_alive=int(KEEP_ALIVE_S),
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
