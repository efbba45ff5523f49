"""The qflow server's HTTP API (``/api/v1``): each call is the local runtime's own
(dispatch, wait, cancel, redispatch, delete, triggers), a read of the results store, or
a change to the server's secret keep (whose values it never returns).

Every request must carry ``Authorization: Bearer TOKEN`` and the client's versions
(:data:`qflow.remote.protocol.VERSION_HEADER`). Both are checked, and a request body
is limited to ``max_body`` bytes, before any body is read, so nothing from an
unknown or mismatched client is ever unpickled.

Example:
    >>> from starlette.testclient import TestClient
    >>> from qflow.store.sqlite import SQLiteStore
    >>> client = TestClient(api_app(SQLiteStore(":memory:"), "s3cret"))
    >>> client.get("/versions").status_code
    401
    >>> client.get("/versions", headers={"Authorization": "Bearer s3cret"}).json()["python"]
    '3.11'
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import os
import pickle
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from qflow.exceptions import (
    DispatchTimeoutError,
    QflowConfigError,
    QflowError,
    QflowInputError,
    ServerAuthError,
    StoreError,
    VersionMismatchError,
)
from qflow.remote import protocol
from qflow.remote.store import READS
from qflow.secrets.keep import SecretKeep, check_name
from qflow.store.base import BlobFile, DispatchQuery, ResultStore
from qflow.store.sqlite import private_mkdir

__all__ = ["api_app"]

#: The longest a client's wait request is held before it is answered as it is.
MAX_WAIT_S = 30.0


class _TooLarge(QflowError):
    pass


def _error(exc: BaseException) -> JSONResponse:
    status = 413 if isinstance(exc, _TooLarge) else protocol.status_for(exc)
    return JSONResponse(protocol.error_body(exc), status_code=status)


async def _body(request: Request, limit: int) -> bytearray:
    """The request body, refused past ``limit`` bytes (by its declared length first)."""
    _declared_too_large(request, limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _too_large(f"over {limit:,}", limit)
    return data


def _too_large(size: str, limit: int) -> _TooLarge:
    return _TooLarge(
        f"The request is {size} bytes; this server takes at most {limit:,} "
        "(QFLOW_SERVER_MAX_BODY on the server). Pass large data as files "
        "(qflow.fs.FileTransfer) or in storage both sides reach."
    )


def _declared_too_large(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{int(declared):,}", limit)


async def _spool(request: Request, limit: int, folder: Path) -> Path:
    """The request body, written as it arrives to a private file in ``folder`` (so a
    1 GB upload is never held in memory as bytes), refused past ``limit`` bytes.
    A client that disconnects midway leaves no file."""
    _declared_too_large(request, limit)
    path = folder / f"{uuid.uuid4().hex}.upload"
    try:
        private_mkdir(folder)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(f"over {limit:,}", limit)
                f.write(chunk)
    except OSError as exc:  # a full or unwritable disk: said, not a bare 500
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise StoreError(
            f"The qflow server could not keep the upload in {folder}: {exc.strerror or exc}. "
            "Free space under its QFLOW_HOME, or send less."
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _unpickle(path: Path) -> Any:
    """Unpickle a spooled body, then delete it: each big array is read once, into the
    memory it then lives in."""
    import cloudpickle

    try:
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    except ModuleNotFoundError as exc:
        raise QflowInputError(
            f"The lattice needs the module {exc.name!r}, which the qflow server does not "
            f"have. Install it on the cluster (every node: pip install it, or bake it into "
            f"the cluster's image), or send it with the lattice: "
            f"cloudpickle.register_pickle_by_value({exc.name}) before dispatching."
        ) from None
    except Exception as exc:
        raise QflowInputError(f"The server could not unpickle the request: {exc!r}") from None
    finally:
        path.unlink(missing_ok=True)


def api_app(store: ResultStore, token: str, max_body: int = protocol.MAX_BODY) -> Any:
    """The API as an ASGI app over ``store``, for clients holding ``token``."""
    from qflow import _api, retention

    # Reads hand out big values as files, streamed from /blobs when a client uses them.
    lazy = store.with_lazy_blobs()
    if store.path == ":memory:":
        uploads = Path(tempfile.gettempdir()) / f"qflow-uploads-{os.getuid()}"
    else:
        uploads = Path(store.path).parent / "uploads"
        for stale in uploads.glob("*.upload"):  # a server stopped midway through one
            with contextlib.suppress(OSError):
                stale.unlink()

    def endpoint(
        handler: Callable[[Request], Awaitable[Any]], check_versions: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            bearer = request.headers.get("authorization", "")
            given = bearer[7:] if bearer.lower().startswith("bearer ") else ""
            try:
                if not hmac.compare_digest(given.encode(), token.encode()):
                    raise ServerAuthError(
                        "This qflow server needs its token: set QFLOW_TOKEN (or run "
                        "`qflow login URL`) with what `qflow token` prints on the server."
                        if not given
                        else "Wrong token for this qflow server: `qflow token` on the "
                        "server prints the right one (it changes at each `qflow start`)."
                    )
                theirs = protocol.parse_versions(request.headers.get(protocol.VERSION_HEADER))
                diff = check_versions and protocol.mismatch(theirs, protocol.local_versions())
                if diff:
                    raise VersionMismatchError(
                        f"This server cannot take pickled work from the client: {diff}."
                    )
                value = await handler(request)
            except QflowError as exc:
                return _error(exc)
            except Exception as exc:  # a bug: said, not hidden behind a bare 500
                return JSONResponse(
                    {"error": f"The qflow server failed: {exc!r}", "type": "ServerError"},
                    status_code=500,
                )
            if isinstance(value, Response):
                return value
            if isinstance(value, bytes):
                return Response(value, media_type="application/octet-stream")
            return JSONResponse(value)

        return run

    async def versions(request: Request) -> Any:  # what the handshake compares
        return protocol.local_versions()

    async def dispatch(request: Request) -> Any:
        sent = await run_in_threadpool(_unpickle, await _spool(request, max_body, uploads))
        lattice = _api._as_lattice(sent.get("lattice"), "dispatch")
        args, kwargs = tuple(sent.get("args", ())), dict(sent.get("kwargs", {}))
        return {"dispatch_id": await run_in_threadpool(_api._launch, lattice, args, kwargs)}

    async def redispatch(request: Request) -> Any:
        sent = await run_in_threadpool(_unpickle, await _spool(request, max_body, uploads))
        submit = await run_in_threadpool(
            _api.redispatch,
            request.path_params["dispatch_id"],
            None,
            sent.get("replace") or None,
            bool(sent.get("reuse")),
        )
        new_id = await run_in_threadpool(submit, *sent.get("args", ()), **sent.get("kwargs", {}))
        return {"dispatch_id": new_id}

    async def wait(request: Request) -> Any:
        dispatch_id = request.path_params["dispatch_id"]
        try:
            seconds = min(MAX_WAIT_S, max(0.0, float(request.query_params.get("timeout", 0))))
        except ValueError:
            raise QflowInputError("timeout is a number of seconds.") from None

        full = request.query_params.get("full") == "1"

        def held() -> dict[str, Any] | bytes:
            try:
                _api.get_result(dispatch_id, wait=True, timeout=seconds, status_only=True)
            except DispatchTimeoutError:
                pass
            row = _api._status_row(_api._runtime(), dispatch_id)
            answer = {**row, "finished": _api._finished(row)}
            if not full:
                return answer
            if answer["finished"]:
                answer["dispatch"] = lazy.get_dispatch(dispatch_id)
            return pickle.dumps(answer, protocol=5)

        return await run_in_threadpool(held)

    async def cancel(request: Request) -> Any:
        body = json.loads(await _body(request, 1 << 20) or b"{}")
        ids = body.get("task_ids")
        message = await run_in_threadpool(_api.cancel, request.path_params["dispatch_id"], ids)
        return {"message": message}

    async def delete(request: Request) -> Any:
        ids = json.loads(await _body(request, 1 << 20) or b"{}").get("ids") or []
        return {"deleted": await run_in_threadpool(retention.delete, ids)}

    async def stop_triggers(request: Request) -> Any:
        ids = json.loads(await _body(request, 1 << 20) or b"{}").get("ids") or []
        return {"started": await run_in_threadpool(_api.stop_triggers, ids)}

    async def read(request: Request) -> Any:
        method = request.path_params["method"]
        if method not in READS:
            raise QflowInputError(
                f"{method!r} is not a store read; valid ones are {', '.join(sorted(READS))}."
            )
        args = json.loads(await _body(request, 1 << 20) or b"{}").get("args") or []
        if method == "search_dispatches":
            args = [DispatchQuery(**args[0])]

        def call() -> bytes:
            # An export is a whole copy to keep: its values come inline.
            source = store if method == "export" else lazy
            return pickle.dumps(getattr(source, method)(*args), protocol=5)

        return await run_in_threadpool(call)

    async def blob(request: Request) -> Any:  # a big stored value, streamed from its file
        found = lazy.blob_file(request.path_params["name"])
        if not isinstance(found, BlobFile):
            raise StoreError(found.error().args[0])
        return FileResponse(found.path, media_type="application/octet-stream")

    def _keep() -> SecretKeep:
        if store.path == ":memory:":
            raise QflowConfigError("This server's store is in memory: it keeps no secrets.")
        return SecretKeep.of_home(Path(store.path).parent)

    async def secrets(request: Request) -> Any:  # names and times, never values
        return {"secrets": [dataclasses.asdict(e) for e in _keep().entries()]}

    async def secret(request: Request) -> Any:
        keep = _keep()
        name = check_name(request.path_params["name"])
        if request.method == "DELETE":
            return {"name": name, "removed": keep.remove(name)}
        value = json.loads(await _body(request, 1 << 20) or b"{}").get("value")
        keep.set(name, value)
        return {"name": name}

    routes = [
        Route("/versions", endpoint(versions, check_versions=False)),
        Route("/dispatches", endpoint(dispatch), methods=["POST"]),
        Route("/dispatches/{dispatch_id}/redispatch", endpoint(redispatch), methods=["POST"]),
        Route("/dispatches/{dispatch_id}/wait", endpoint(wait)),
        Route("/dispatches/{dispatch_id}/cancel", endpoint(cancel), methods=["POST"]),
        Route("/delete", endpoint(delete), methods=["POST"]),
        Route("/triggers/stop", endpoint(stop_triggers), methods=["POST"]),
        Route("/store/{method}", endpoint(read), methods=["POST"]),
        Route("/blobs/{name:path}", endpoint(blob)),
        Route("/secrets", endpoint(secrets)),
        Route("/secrets/{name}", endpoint(secret), methods=["PUT", "DELETE"]),
    ]
    return Starlette(routes=routes)
