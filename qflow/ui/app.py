"""The ``qflow ui`` web app: Starlette routes over the results store.

Pages (HTML, with a little JavaScript) and the JSON they are built from:

=========================================  ============================================
``/``                                      dispatch list
``/dispatch/{id}``                         a dispatch: graph, timeline, nodes, actions
``/api/dispatches?status&q&sort&order&page&per_page``  the list as JSON
``/api/dispatches/{id}``                   a dispatch as JSON (``?format=csv``: nodes)
``/api/dispatches/{id}/nodes/{node}``      one node with its full stdout/stderr
``/api/dispatches/{id}/metrics``           what its electrons (and sublattices') logged
``/api/dispatches/{id}/state``             statuses and times only: what a live page polls
``/api/events[?dispatch={id}]``            server-sent events: ``change`` on every write
``POST /api/dispatches/{id}/cancel``       cancel (CSRF token required)
``POST /api/dispatches/{id}/redispatch``   run again, ``{"reuse": true}`` reuses results
``POST /api/delete``                       ``{"ids": [...]}``: delete finished dispatches
=========================================  ============================================

Example:
    >>> from starlette.testclient import TestClient
    >>> from qflow.store.sqlite import SQLiteStore
    >>> app = create_app(SQLiteStore(":memory:"))
    >>> client = TestClient(app, base_url="http://127.0.0.1:8765")
    >>> client.get("/api/dispatches").status_code  # every request needs the token
    401
    >>> auth = {"Authorization": f"Bearer {app.guard.token}"}
    >>> client.get("/api/dispatches", headers=auth).json()["total"]
    0
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from qflow.core.text import url_host
from qflow.exceptions import ClusterError, QflowError, QflowInputError, StoreError
from qflow.store.base import DispatchQuery, ResultStore
from qflow.ui.security import Guard, GuardMiddleware
from qflow.ui.views import (
    dispatch_view,
    metrics_view,
    node_view,
    nodes_csv,
    state_view,
    with_logs,
)

_HERE = Path(__file__).parent
#: Seconds between checks of the store for the event stream.
EVENT_POLL_S = 0.5
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0


#: Seconds a redispatch may take to reach the head's dispatcher service.
HAND_OVER_S = 120.0


async def hand_to_head(store: ResultStore, dispatch_id: str, reuse: bool) -> str:
    """Redispatch through ``qflow redispatch`` in a child process, which hands the
    dispatch to the ``qflow start`` head and exits: the UI itself never joins Ray, nor
    runs a dispatch that would die with it.

    Raises:
        ClusterError: no head runs for the store's home, or the hand-over failed.
    """
    import dataclasses
    import os
    import sys

    from qflow.runtime.head_state import live_address
    from qflow.settings import Settings

    path = getattr(store, "path", ":memory:")
    if path == ":memory:":
        raise QflowInputError("This UI serves an in-memory store; it cannot redispatch.")
    home = Path(path).parent
    env = {**os.environ, "QFLOW_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    settings = dataclasses.replace(Settings.from_env(), home=home, ray_address=None)
    if live_address(settings) is None:
        raise ClusterError(
            f"Redispatch hands the dispatch to the qflow head, and none runs "
            f"for {home}: run `qflow start` (with QFLOW_HOME={home}), then "
            "try again."
        )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qflow.cli",
        "redispatch",
        dispatch_id,
        *(["--reuse"] if reuse else []),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), HAND_OVER_S)
    except TimeoutError:
        proc.kill()
        raise ClusterError(
            f"The head did not take the redispatch of {dispatch_id} within "
            f"{HAND_OVER_S:.0f} s; check it with `qflow status`."
        ) from None
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip().removeprefix("error: ")
        if proc.returncode == 1 and text:  # qflow's own error, already phrased for users
            raise QflowInputError(text)
        raise ClusterError(f"`qflow redispatch` exited with {proc.returncode}: {text[-2000:]}")
    return out.decode().strip().splitlines()[-1]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or {} for no body, bad JSON or a non-object."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def create_app(store: ResultStore, guard: Guard | None = None) -> Any:
    """The ASGI app over ``store``, behind ``guard`` (loopback, a fresh token, by default)."""
    guard = guard or Guard.for_bind("127.0.0.1", 8765)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))

    def query_from(request: Request) -> DispatchQuery:
        q = request.query_params
        try:
            page = int(q.get("page", "1"))
            per_page = int(q.get("per_page", "50"))
        except ValueError as exc:
            raise StoreError(f"page and per_page are whole numbers: {exc}") from None
        if not 1 <= page <= 10**9 or not 1 <= per_page <= 500:
            raise StoreError(
                f"page counts from 1 to 1,000,000,000 and per_page from 1 to "
                f"500; got page={page}, per_page={per_page}."
            )
        return DispatchQuery(
            status=q.get("status") or None,
            text=q.get("q", "").strip(),
            sort=q.get("sort", "created_at"),  # type: ignore[arg-type]  # checked by the query
            descending=q.get("order", "desc") != "asc",
            offset=(page - 1) * per_page,
            limit=per_page,
        )

    def list_json(request: Request) -> dict[str, Any]:
        query = query_from(request)
        page = store.search_dispatches(query)
        return {
            "rows": page.rows,
            "total": page.total,
            "counts": page.counts,
            "page": query.offset // query.limit + 1,
            "per_page": query.limit,
        }

    async def index(request: Request) -> Response:
        try:
            data = list_json(request)
        except StoreError as exc:
            return HTMLResponse(str(exc), status_code=400)
        return templates.TemplateResponse(
            request,
            "index.html",
            {"data": data, "csrf": guard.csrf, "query": dict(request.query_params)},
        )

    async def api_list(request: Request) -> Response:
        try:
            return JSONResponse(list_json(request))
        except StoreError as exc:
            return _error(400, str(exc))

    async def dispatch_page(request: Request) -> Response:
        view = dispatch_view(store, request.path_params["dispatch_id"])
        if view is None:
            return HTMLResponse("No such dispatch.", status_code=404)
        return templates.TemplateResponse(request, "dispatch.html", {"d": view, "csrf": guard.csrf})

    async def api_dispatch(request: Request) -> Response:
        view = dispatch_view(store, request.path_params["dispatch_id"])
        if view is None:
            return _error(404, f"No dispatch {request.path_params['dispatch_id']!r}.")
        if request.query_params.get("format") == "csv":
            return Response(nodes_csv(with_logs(store, view)), media_type="text/csv")
        return JSONResponse(view)

    async def api_node(request: Request) -> Response:
        node = node_view(store, request.path_params["dispatch_id"], request.path_params["node_id"])
        if node is None:
            return _error(404, "No such node.")
        return JSONResponse(node)

    async def api_state(request: Request) -> Response:
        view = state_view(store, request.path_params["dispatch_id"])
        if view is None:
            return _error(404, f"No dispatch {request.path_params['dispatch_id']!r}.")
        return JSONResponse(view)

    async def api_metrics(request: Request) -> Response:
        dispatch_id = request.path_params["dispatch_id"]
        if store.get_status(dispatch_id) is None:
            return _error(404, f"No dispatch {dispatch_id!r}.")
        return JSONResponse(metrics_view(store, dispatch_id))

    async def events(request: Request) -> Response:
        dispatch_id = request.query_params.get("dispatch")

        async def stream() -> AsyncIterator[str]:
            last, idle = None, 0.0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                marker = await asyncio.to_thread(store.change_marker)
                if marker != last:
                    last, idle = marker, 0.0
                    data: dict[str, Any] = {"marker": list(marker)}
                    if dispatch_id:
                        row = await asyncio.to_thread(store.get_status, dispatch_id)
                        data["status"] = row["status"] if row else None
                    yield f"event: change\ndata: {json.dumps(data)}\n\n"
                elif idle >= KEEPALIVE_S:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(EVENT_POLL_S)
                idle += EVENT_POLL_S

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def cancel(request: Request) -> Response:
        # Through the store alone: the UI never joins Ray, so a stopped head cannot
        # take the UI down with it, and whatever runs the dispatch sees the cancel.
        from qflow._api import cancel_recorded
        from qflow.core.status import Status

        dispatch_id = request.path_params["dispatch_id"]
        try:
            row = await asyncio.to_thread(store.get_status, dispatch_id)
            if row is None:
                return _error(400, f"No dispatch {dispatch_id!r}.")
            if Status(row["status"]).is_final:
                return _error(
                    400, f"Dispatch {dispatch_id} already ended {row['status']}; nothing to cancel."
                )
            await asyncio.to_thread(cancel_recorded, store, row)
        except QflowError as exc:
            return _error(400, str(exc))
        return JSONResponse({"cancelled": dispatch_id})

    async def redispatch(request: Request) -> Response:
        reuse = bool((await _json_body(request)).get("reuse", False))
        try:
            new_id = await hand_to_head(store, request.path_params["dispatch_id"], reuse)
        except QflowError as exc:
            return _error(409 if isinstance(exc, ClusterError) else 400, str(exc))
        return JSONResponse({"dispatch_id": new_id})

    async def delete(request: Request) -> Response:
        import qflow

        ids = (await _json_body(request)).get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return _error(400, 'Send {"ids": ["<dispatch id>", ...]}.')
        try:
            removed = await asyncio.to_thread(qflow.delete, ids)
        except QflowError as exc:
            return _error(400, str(exc))
        return JSONResponse({"deleted": removed})

    routes = [
        Route("/", index),
        Route("/dispatch/{dispatch_id:path}", dispatch_page),
        Route("/api/dispatches", api_list),
        Route("/api/dispatches/{dispatch_id:path}/nodes/{node_id:int}", api_node),
        Route("/api/dispatches/{dispatch_id:path}/metrics", api_metrics),
        Route("/api/dispatches/{dispatch_id:path}/state", api_state),
        Route("/api/dispatches/{dispatch_id:path}/cancel", cancel, methods=["POST"]),
        Route("/api/dispatches/{dispatch_id:path}/redispatch", redispatch, methods=["POST"]),
        Route("/api/dispatches/{dispatch_id:path}", api_dispatch),
        Route("/api/delete", delete, methods=["POST"]),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    return GuardMiddleware(app, guard)


#: Seconds a connection may take to send a request's headers (when it opens, or after
#: its last response) before it is closed: uvicorn alone waits for ever, so idle or
#: half-open connections would pile up.
REQUEST_HEAD_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open after a response.
KEEP_ALIVE_S = 5.0


def timed_protocol() -> type:
    """uvicorn's h11 protocol, closing connections that start no request in time."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(REQUEST_HEAD_TIMEOUT_S, self._expire)

        def _expire(self) -> None:
            cycle = self.cycle
            if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()  # no request started in time: idle or half-open

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return TimedH11Protocol


def serve(
    store: ResultStore,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    announce: Any = print,
    socket_path: str | None = None,
) -> None:
    """Serve the UI until interrupted; ``announce`` gets the URL (with the token, once).

    With ``socket_path``, it listens on that Unix socket instead of a TCP port. The
    socket must be in a folder only its owner can open (``$QFLOW_HOME`` is one), since
    uvicorn makes the socket itself writable by everyone.
    """
    import os

    import uvicorn

    guard = Guard.for_bind(host, port, token)
    options: dict[str, Any] = {"host": host, "port": port}
    if socket_path is not None:
        folder = Path(socket_path).absolute().parent
        if (
            not folder.is_dir()
            or folder.stat().st_mode & 0o077
            or folder.stat().st_uid != os.getuid()
        ):
            raise QflowInputError(
                f"The UI's socket {socket_path} must be in a folder you own that only you "
                f"can open (mode 0700); {folder} is not. Use one such as "
                f"{Path(getattr(store, 'path', '~/.qflow/qflow.db')).parent / 'ui.sock'}."
            )
        Path(socket_path).unlink(missing_ok=True)  # a stale socket from an earlier run
        options = {"uds": socket_path}
        announce(
            f"qflow UI on unix socket {socket_path} (token {guard.token}; e.g. curl "
            f"--unix-socket {socket_path} -H 'Authorization: Bearer TOKEN' "
            "http://localhost/api/dispatches)"
        )
    else:
        announce(f"qflow UI at http://{url_host(host)}:{port}/?token={guard.token}")
    uvicorn.run(
        create_app(store, guard),
        log_level="warning",
        http=timed_protocol(),
        timeout_keep_alive=int(KEEP_ALIVE_S),
        **options,
    )
