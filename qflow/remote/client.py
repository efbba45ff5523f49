"""The HTTP client of a qflow server: where it is, its token, and one call per action.

The server is chosen, first to last, by ``dispatcher_addr=`` on the call, by Covalent's
``set_config({"dispatcher.address": ..., "dispatcher.port": ...})``, by
``QFLOW_SERVER`` (with ``QFLOW_TOKEN``), or by ``qflow login`` (which keeps the URL and
token in ``$QFLOW_HOME/login.json``, 0600). With none of them, qflow runs locally.

Example:
    >>> server_url("10.0.0.5:48008")
    'http://10.0.0.5:48008'
    >>> server_url("https://qflow.example.org/")
    'https://qflow.example.org'
"""

from __future__ import annotations

import http.client
import io
import json
import os
import pickle
import select
import ssl
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from qflow.exceptions import (
    QflowInputError,
    QflowSerializationError,
    ServerError,
    VersionMismatchError,
)
from qflow.remote import protocol

__all__ = ["Client", "client_for", "configure", "login", "serve_locally", "server_url"]

#: Seconds to connect to the server before it counts as down.
CONNECT_S = 5.0

#: Seconds a request may take beyond what it asks the server to wait.
READ_S = 60.0

#: Seconds ``wait`` keeps trying a server that stopped answering (one restarting).
RECONNECT_S = 60.0


def server_url(address: str) -> str:
    """``address`` as a base URL: ``host:port`` becomes ``http://host:port``.

    Raises:
        QflowInputError: not an http(s) URL or ``host:port``.
    """
    if not isinstance(address, str) or not address.strip():
        raise QflowInputError(
            f"A qflow server address is a URL such as http://HOST:PORT or HOST:PORT; "
            f"got {address!r}."
        )
    text = address.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QflowInputError(
            f"A qflow server address is a URL such as http://HOST:PORT or https://HOST "
            f"(or HOST:PORT); got {address!r}."
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _login_file(home: Path) -> Path:
    return home / "login.json"


def _home() -> Path:
    return Path(os.environ.get("QFLOW_HOME") or Path.home() / ".qflow").expanduser()


def login(url: str, token: str, home: Path | None = None) -> Path:
    """Keep ``url`` and ``token`` for later calls (``$QFLOW_HOME/login.json``, 0600)."""
    home = home or _home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _login_file(home)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": server_url(url), "token": token}, f)
    return path


def _saved_login(home: Path) -> dict[str, str]:
    try:
        data = json.loads(_login_file(home).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


#: The server Covalent's ``set_config({"dispatcher.address": ..., "dispatcher.port": ...})``
#: chose in this process, if any.
_CONFIGURED: dict[str, str] = {}


def configure(address: str | None) -> None:
    """Choose (or, with None, forget) the server for this process, as Covalent's
    ``dispatcher.address`` and ``dispatcher.port`` settings do."""
    _CONFIGURED.clear()
    if address is not None:
        _CONFIGURED["address"] = server_url(address)


_CLIENTS: dict[tuple[str, str | None], Client] = {}
_CLIENTS_LOCK = threading.Lock()
_SERVING = False


def serve_locally() -> None:
    """Make this process a server's: it runs what it is sent here, never forwarding
    to a server the environment or a login names."""
    global _SERVING
    _SERVING = True


def client_for(dispatcher_addr: str | None = None) -> Client | None:
    """The client of the chosen server, or None when qflow runs locally."""
    if dispatcher_addr is not None and not isinstance(dispatcher_addr, str):
        raise QflowInputError(
            f"dispatcher_addr is the qflow server's address, e.g. 'http://HOST:PORT' or "
            f"'HOST:PORT'; got {dispatcher_addr!r}. (In qflow, status_only= and the other "
            "flags of get_result are passed by name.)"
        )
    if _SERVING:
        return None
    saved = _saved_login(_home())
    address = (
        dispatcher_addr
        or _CONFIGURED.get("address")
        or os.environ.get("QFLOW_SERVER")
        or saved.get("url")
    )
    if not address:
        return None
    url = server_url(address)
    token = os.environ.get("QFLOW_TOKEN") or (
        saved.get("token") if saved.get("url") == url else None
    )
    with _CLIENTS_LOCK:
        client = _CLIENTS.get((url, token))
        if client is None:
            client = _CLIENTS[(url, token)] = Client(url, token)
    return client


class Client:
    """Calls to one qflow server, over a kept-alive connection per thread.

    Args:
        url: the server's base URL.
        token: its token (``qflow token`` on the server prints it).
    """

    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token = server_url(url), token
        parts = urllib.parse.urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path
        self._local = threading.local()
        self._open: list[http.client.HTTPConnection] = []  # every thread's, to close
        self._open_lock = threading.Lock()
        self._checked = False

    def close(self) -> None:
        """Close the connections this client keeps open (a later call opens one)."""
        with self._open_lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()

    def __del__(self) -> None:
        if hasattr(self, "_open_lock"):  # not when __init__ refused its URL
            self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and _closed_by_peer(conn):  # the server's keep-alive ran out
            self._drop()
            conn = None
        if conn is None:
            conn = self._new_connection(CONNECT_S)
            conn.connect()
            self._local.conn = conn
            with self._open_lock:
                self._open.append(conn)
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        """A new (not yet connected) connection to the server, over TLS for https."""
        if self._https:
            context = ssl.create_default_context(cafile=os.environ.get("QFLOW_SERVER_CA"))
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            with self._open_lock:
                self._open = [c for c in self._open if c is not conn]
        self._local.conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
        wait_s: float = 0.0,
    ) -> tuple[int, bytes]:
        """One request to ``API + path``; the status and body of a 2xx answer.

        Raises:
            ServerError: the server did not answer within seconds, or answered an error
                (translated to the qflow error it carries).
        """
        if not self._checked:
            self._handshake()
        return self._send(method, protocol.API + path, body, content_type, wait_s)

    def _headers(self, content_type: str) -> dict[str, str]:
        headers = {
            "Content-Type": content_type,
            protocol.VERSION_HEADER: json.dumps(protocol.local_versions()),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _down(self, exc: BaseException) -> ServerError:
        return ServerError(
            f"The qflow server at {self.url} did not answer: {exc!r}. Check that it "
            "runs (`qflow status` on its machine) and that this address reaches it."
        )

    def _send(
        self, method: str, path: str, body: bytes | None, content_type: str, wait_s: float
    ) -> tuple[int, bytes]:
        headers = self._headers(content_type)
        # A kept-alive connection the server has closed fails on first use: a request
        # that changes nothing is sent again once, on a new connection.
        retries = 1 if method == "GET" else 0
        for attempt in range(retries + 1):
            try:
                conn = self._connection(READ_S + wait_s)
                conn.request(method, self._prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if attempt < retries and not isinstance(exc, TimeoutError):
                    continue
                raise self._down(exc) from exc
        if response.getheader("connection", "").lower() == "close":
            self._drop()
        if response.status >= 400:
            raise protocol.error_from(response.status, data, self.url)
        return response.status, data

    def _handshake(self) -> None:
        """Compare versions with the server once, before anything is sent."""
        _, data = self._send("GET", protocol.API + "/versions", None, "application/json", 0.0)
        theirs = json.loads(data)
        diff = protocol.mismatch(protocol.local_versions(), theirs)
        if diff:
            raise VersionMismatchError(
                f"This client and the qflow server at {self.url} cannot exchange pickled "
                f"work: {diff}. Install the server's versions here (pip install "
                f"qflow-runtime=={theirs.get('qflow')} with Python {theirs.get('python')}), "
                "or upgrade the server."
            )
        self._checked = True

    def json(self, method: str, path: str, payload: Any = None, *, wait_s: float = 0.0) -> Any:
        """A JSON request and its JSON answer."""
        body = None if payload is None else json.dumps(payload).encode()
        _, data = self.request(method, path, body, wait_s=wait_s)
        return json.loads(data) if data else None

    def pickled(self, path: str, payload: Any) -> Any:
        """POST ``payload`` pickled by cloudpickle (functions of scripts and notebooks by
        value); the JSON answer.

        The pickle streams onto the connection as it is made (chunked), and a big array
        goes from its own memory to the socket: the payload is never also held as bytes.

        Raises:
            QflowSerializationError: the payload cannot be pickled (nothing is dispatched).
            ServerError: as :meth:`request`.
        """
        import cloudpickle

        if not self._checked:
            self._handshake()
        conn = self._connection(READ_S)
        try:
            conn.putrequest("POST", self._prefix + protocol.API + path)
            for key, value in self._headers("application/octet-stream").items():
                conn.putheader(key, value)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            chunked = _Chunked(conn)
            try:
                cloudpickle.Pickler(chunked, protocol=5).dump(payload)
            except Exception as exc:
                if isinstance(exc, OSError) and chunked.sent:
                    raise  # the connection failed, not the pickling
                self._drop()  # the server drops the half-sent request
                raise QflowSerializationError(
                    f"What this dispatch sends to the server cannot be pickled: {exc!r}. "
                    "Pass plain data (numbers, arrays, paths), and open files, locks or "
                    "sockets inside the electron."
                ) from exc
            conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            answer = self._early_answer(conn)
            self._drop()
            if answer is None:
                raise self._down(exc) from exc
            response, data = answer
        if response.status >= 400:
            self._drop()
            raise protocol.error_from(response.status, data, self.url)
        return json.loads(data)

    @staticmethod
    def _early_answer(
        conn: http.client.HTTPConnection,
    ) -> tuple[http.client.HTTPResponse, bytes] | None:
        """The server's answer to a request it refused before reading it all (a wrong
        token, a body over its limit), if it sent one."""
        try:
            response = conn.getresponse()
            return response, response.read()
        except (OSError, http.client.HTTPException):
            return None

    def stream(self, path: str) -> io.BufferedIOBase:
        """GET ``API + path`` on a connection of its own; the body as a stream to read
        as it arrives (close it when done).

        Raises:
            ServerError: as :meth:`request`.
        """
        if not self._checked:
            self._handshake()
        conn = self._new_connection(READ_S)
        try:
            conn.request(
                "GET",
                self._prefix + protocol.API + path,
                headers={**self._headers("application/json"), "Connection": "close"},
            )
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._down(exc) from exc
        if response.status >= 400:
            data = response.read()
            conn.close()
            raise protocol.error_from(response.status, data, self.url)
        return _Download(response, conn)

    def wait(self, dispatch_id: str, timeout: float | None, full: bool = False) -> dict[str, Any]:
        """The dispatch's status row once it has finished, or when ``timeout`` runs out
        (then as it is): the server holds each request until the dispatch ends or a
        while has passed, so waiting costs no tight poll.

        With ``full``, a finished row also carries the dispatch's whole record under
        ``"dispatch"`` (what ``RemoteStore.get_dispatch`` reads), saving a round trip.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        quoted = urllib.parse.quote(dispatch_id, safe="")
        down_since: float | None = None
        while True:
            left = 20.0 if deadline is None else max(0.0, min(20.0, deadline - time.monotonic()))
            try:
                path = f"/dispatches/{quoted}/wait?timeout={left:.3f}"
                if full:
                    _, data = self.request("GET", path + "&full=1", wait_s=left)
                    row: dict[str, Any] = pickle.loads(data)
                else:
                    row = self.json("GET", path, wait_s=left)
            except ServerError as exc:  # a server restarting: try again for a while
                if exc.__cause__ is None:  # it answered (a token, versions...): final
                    raise
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since > RECONNECT_S or (deadline is not None and now > deadline):
                    raise
                time.sleep(1.0)
                continue
            down_since = None
            if row.get("finished") or (deadline is not None and time.monotonic() >= deadline):
                return row

    def dispatch(
        self,
        lattice: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        redispatch_of: str | None = None,
        replace: dict[str, Any] | None = None,
        reuse: bool = False,
    ) -> str:
        """Send a lattice and its inputs (or, with ``redispatch_of``, a redispatch) to
        the server to record and run; the new dispatch's id."""
        if redispatch_of is None:
            answer = self.pickled(
                "/dispatches", {"lattice": lattice, "args": args, "kwargs": kwargs}
            )
        else:
            quoted = urllib.parse.quote(redispatch_of, safe="")
            answer = self.pickled(
                f"/dispatches/{quoted}/redispatch",
                {"args": args, "kwargs": kwargs, "replace": replace, "reuse": reuse},
            )
        return str(answer["dispatch_id"])

    def cancel(self, dispatch_id: str, task_ids: list[int] | None) -> str:
        """Cancel on the server; its message."""
        quoted = urllib.parse.quote(dispatch_id, safe="")
        return str(
            self.json("POST", f"/dispatches/{quoted}/cancel", {"task_ids": task_ids})["message"]
        )

    def delete(self, dispatch_ids: list[str]) -> int:
        """Delete finished dispatches on the server; how many rows went."""
        return int(self.json("POST", "/delete", {"ids": dispatch_ids})["deleted"])

    def stop_triggers(self, dispatch_ids: list[str]) -> list[str]:
        """Stop triggers registered on the server; the ids they started."""
        return list(self.json("POST", "/triggers/stop", {"ids": dispatch_ids})["started"])


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server: it then reads
    as ready (at end of file), where a live idle one has nothing to read."""
    if conn.sock is None:
        return True
    try:
        ready, _, _ = select.select([conn.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


class _Chunked:
    """The file a pickler writes a request body into: each write goes out at once as
    one chunk of HTTP/1.1 chunked encoding, straight from the writer's buffer."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn, self.sent = conn, 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if n:
            self.conn.send(b"%X\r\n" % n)
            self.conn.send(data)
            self.conn.send(b"\r\n")
            self.sent += n
        return n


class _Download(io.BufferedIOBase):
    """A response body read as it arrives; closing it closes its connection."""

    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection):
        self._response, self._conn = response, conn

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._response.read(None if size is None or size < 0 else size)

    def read1(self, size: int = -1) -> bytes:
        return self._response.read1(size)

    def readinto(self, buffer: Any) -> int:
        return self._response.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        return self._response.readline(-1 if size is None else size)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._conn.close()
        super().close()
