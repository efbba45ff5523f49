"""A results store read over HTTP from a qflow server: what a :class:`~qflow.Result`,
``qflow list``, ``show``, ``logs`` and ``export`` read, with nothing kept here.

Rows come back as the server's store returns them; node outputs stay pickled bytes
until a :class:`~qflow.Result` reads them, and a big one (kept in a file there) is
fetched only then, streamed into the unpickler. Writes belong to the server: they raise.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import urllib.parse
from collections.abc import Sequence
from typing import Any

from qflow.exceptions import StoreError
from qflow.remote.client import Client
from qflow.store.base import (
    BlobFile,
    DispatchPage,
    DispatchQuery,
    LazyBlob,
    MetricPoint,
    ResultStore,
)

__all__ = ["READS", "RemoteBlob", "RemoteStore", "chosen_store"]

#: The row fields that may hold a stored value.
_BLOB_FIELDS = ("inputs", "result", "graph", "output")

#: The store methods a client may call on the server, and nothing else.
READS = frozenset(
    {
        "get_status",
        "match_ids",
        "get_dispatch",
        "get_nodes",
        "get_node_texts",
        "get_node_states",
        "children",
        "list_dispatches",
        "search_dispatches",
        "get_metrics",
        "size_bytes",
        "export",
    }
)


@dataclasses.dataclass(frozen=True)
class RemoteBlob(LazyBlob):
    """A big value in the server's store, fetched from ``/blobs`` when it is read.

    Attributes:
        client: the server's client.
        name: the file's name in the server's store.
        size: its length in bytes.
    """

    client: Client
    name: str
    size: int

    def open(self) -> io.BufferedIOBase:
        return self.client.stream(f"/blobs/{urllib.parse.quote(self.name)}")


class RemoteStore(ResultStore):
    """The server's results store, read through ``client``.

    Example:
        >>> RemoteStore(Client("http://127.0.0.1:1", None)).path
        'http://127.0.0.1:1'
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.path = client.url

    def _read(self, method: str, *args: Any) -> Any:
        body = json.dumps({"args": list(args)}).encode()
        _, data = self.client.request(
            "POST", f"/store/{urllib.parse.quote(method)}", body, content_type="application/json"
        )
        # Rows are plain data (and qflow's own row types): the server is trusted with
        # them, as with any result it computes for this client.
        return self.bind(pickle.loads(data))

    def bind(self, rows: Any) -> Any:
        """``rows`` (a row, a list of them, or anything else) with each value the server
        keeps in a file made a :class:`RemoteBlob` to fetch through this store."""
        if isinstance(rows, list):
            return [self.bind(r) for r in rows]
        if isinstance(rows, dict):
            for key in _BLOB_FIELDS:
                found = rows.get(key)
                if isinstance(found, BlobFile):
                    rows[key] = RemoteBlob(self.client, found.name, found.size)
        return rows

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise StoreError(
            f"The results store of the qflow server at {self.client.url} is written by the "
            "server only; dispatch, cancel and delete through qflow's API instead."
        )

    create_dispatch = update_dispatch = update_nodes = end_dispatch = claim = _refuse
    unfinished = delete_dispatches = finished_before = add_metrics = _refuse
    import_ = _refuse

    def get_status(self, dispatch_id: str) -> dict[str, Any] | None:
        row: dict[str, Any] | None = self._read("get_status", dispatch_id)
        return row

    def match_ids(self, prefix: str, limit: int = 5) -> list[str]:
        ids: list[str] = self._read("match_ids", prefix, limit)
        return ids

    def get_dispatch(self, dispatch_id: str) -> dict[str, Any] | None:
        row: dict[str, Any] | None = self._read("get_dispatch", dispatch_id)
        return row

    def get_nodes(self, dispatch_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._read("get_nodes", dispatch_id)
        return rows

    def get_node_texts(self, dispatch_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._read("get_node_texts", dispatch_id)
        return rows

    def get_node_states(self, dispatch_id: str) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._read("get_node_states", dispatch_id)
        return rows

    def children(self, dispatch_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._read("children", dispatch_id)
        return rows

    def list_dispatches(self, limit: int = 20) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._read("list_dispatches", limit)
        return rows

    def search_dispatches(self, query: DispatchQuery) -> DispatchPage:
        page: DispatchPage = self._read("search_dispatches", dataclasses.asdict(query))
        return page

    def get_metrics(self, dispatch_ids: Sequence[str]) -> dict[str, list[MetricPoint]]:
        points: dict[str, list[MetricPoint]] = self._read("get_metrics", list(dispatch_ids))
        return points

    def size_bytes(self) -> int:
        return int(self._read("size_bytes"))

    def export(self, dispatch_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._read("export", dispatch_id)
        return data

    def change_marker(self) -> Any:
        return None


def chosen_store() -> RemoteStore | None:
    """The store of the qflow server this process sends its work to, if it chose one
    (``QFLOW_SERVER`` or ``qflow login``); None when it runs locally."""
    from qflow.remote.client import client_for

    client = client_for()
    return None if client is None else RemoteStore(client)
