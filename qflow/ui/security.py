"""Who may talk to the UI: Host check, token login, and CSRF/Origin checks on actions.

- Every request's ``Host`` header must name the address the server is bound to
  (``localhost`` too on loopback). A DNS-rebinding page sends its own host name, and
  is refused.
- Every request needs the server's token, on loopback too (as Jupyter does: the store is
  private to its owner, and any local user can reach a loopback port). It is given once
  in the URL (``?token=...``, swapped for an HttpOnly, SameSite=Strict cookie and a
  redirect that drops it from the address bar), or as ``Authorization: Bearer ...``.
  Pages, and so the CSRF token, are only served to requests that carry it.
- State-changing requests (POST) must carry the page's CSRF token in ``X-CSRF-Token``
  and, when the browser sends one, an ``Origin`` equal to the server's own.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

COOKIE = "qflow_ui"
CSRF_HEADER = "x-csrf-token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Guard:
    """The checks for one server.

    Args:
        host, port: where the server listens.
        token: the login token every request must carry.
        csrf: the token pages send back with actions.
    """

    host: str
    port: int
    token: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def for_bind(cls, host: str, port: int, token: str | None = None) -> Guard:
        """A guard for ``host:port`` with ``token``, or a fresh one."""
        return cls(host=host, port=port, token=token or secrets.token_urlsafe(24))

    def allowed_hosts(self) -> set[str]:
        names = {self.host}
        if is_loopback(self.host):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        if self.host in ("0.0.0.0", "::"):  # every interface: any of its names may be used
            return set()
        return names | {f"{n}:{self.port}" for n in names}

    def host_ok(self, host_header: str) -> bool:
        allowed = self.allowed_hosts()
        return not allowed or host_header.lower() in allowed

    def token_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value, self.token)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _send_plain(
    send: Callable[[Any], Awaitable[None]],
    status: int,
    text: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


class GuardMiddleware:
    """ASGI middleware applying a :class:`Guard` to every HTTP request."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        guard = self.guard
        if not guard.host_ok(headers.get("host", "")):
            await _send_plain(
                send,
                400,
                f"Host {headers.get('host')!r} is not this server ({guard.host}:{guard.port}).",
            )
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        if "token" in query and scope["method"] == "GET":
            if not guard.token_ok(query["token"]):
                await _send_plain(
                    send, 401, "Wrong token. Use the URL `qflow ui` printed when it started."
                )
                return
            query.pop("token")
            location = scope["path"] + (f"?{urlencode(query)}" if query else "")
            cookie = f"{COOKIE}={guard.token}; HttpOnly; SameSite=Strict; Path=/"
            await _send_plain(
                send,
                303,
                "Logged in.",
                [(b"location", location.encode()), (b"set-cookie", cookie.encode())],
            )
            return
        bearer = headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if token is None:
            jar = SimpleCookie(headers.get("cookie", ""))
            token = jar[COOKIE].value if COOKIE in jar else None
        if not guard.token_ok(token):
            await _send_plain(
                send,
                401,
                "This qflow UI needs its token: open the URL "
                "`qflow ui` printed (it ends in ?token=...), or send "
                "`Authorization: Bearer <token>`.",
            )
            return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if (
                origin is not None
                and origin != f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            ):
                await _send_plain(send, 403, f"Cross-origin request from {origin} refused.")
                return
            if not hmac.compare_digest(headers.get(CSRF_HEADER, ""), guard.csrf):
                await _send_plain(
                    send,
                    403,
                    "Missing or wrong X-CSRF-Token: actions are made from the UI's own pages.",
                )
                return
        await self.app(scope, receive, send)
