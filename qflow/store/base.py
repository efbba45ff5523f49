"""The results-store interface, so that a server database can replace SQLite."""

from __future__ import annotations

import abc
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import cloudpickle

from qflow.exceptions import QflowSerializationError, StoreError

#: Columns of a dispatch row.
DISPATCH_FIELDS = (
    "dispatch_id",
    "name",
    "status",
    "parent_id",
    "parent_node_id",
    "created_at",
    "start_time",
    "end_time",
    "error",
    "inputs",
    "result",
    "graph",
    "graph_text",
    "owner",
    "heartbeat",
    "result_text",
    "inputs_text",
    "source",
    "electron_sources",
    "tags",
)
#: The columns a status check reads: never the input, result or graph blobs.
STATUS_FIELDS = (
    "dispatch_id",
    "name",
    "status",
    "parent_id",
    "created_at",
    "start_time",
    "end_time",
    "error",
    "owner",
    "heartbeat",
    "tags",
)
#: Statuses after which nothing more happens to a dispatch or node.
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


def now_iso() -> str:
    """The time now, in UTC, as the store writes it (``datetime.isoformat``).

    Example:
        >>> now_iso().endswith("+00:00")
        True
    """
    return iso_at(time.time())


#: The last whole second formatted, and its text: every node's start and end is
#: stamped, and formatting a datetime each time is a cost on the worker's hot path.
_second: tuple[int, str] = (-1, "")


def iso_at(seconds: float) -> str:
    """POSIX ``seconds`` as ``datetime.fromtimestamp(seconds, UTC).isoformat()`` writes
    them, with the text of the whole second reused while it lasts."""
    global _second
    whole = math.floor(seconds)
    micro = round((seconds - whole) * 1e6)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != whole:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _second = (whole, text)
    return f"{cached[1]}.{micro:06d}+00:00" if micro else f"{cached[1]}+00:00"


@dataclass(frozen=True)
class UnreadableBlob:
    """A stored value whose file is gone or refused; reading it raises StoreError.

    Only that one value is lost: the rest of the dispatch stays readable.
    """

    path: str
    reason: str

    def error(self) -> StoreError:
        return StoreError(
            f"A stored value cannot be read from {self.path}: {self.reason}. "
            "The rest of the dispatch is intact; rerun the node to recreate "
            "it (qflow.redispatch)."
        )


class Writable(Protocol):
    """What a pickler writes into."""

    def write(self, data: Any, /) -> int: ...


class LazyBlob(abc.ABC):
    """A stored value too big to read with its row: its bytes are read, or streamed
    into :func:`loads`, only when the value is used.

    Attributes:
        size: the pickle's length in bytes.
    """

    size: int

    @abc.abstractmethod
    def open(self) -> io.BufferedIOBase:
        """A binary stream of the pickle (the caller closes it)."""

    def read(self) -> bytes:
        """The whole pickle."""
        with self.open() as f:
            return f.read()


@dataclass(frozen=True)
class BlobFile(LazyBlob):
    """A value kept in a file beside the store (see ``SQLiteStore(lazy_blobs=True)``).

    Attributes:
        name: the file's name under the store's home (``blobs/ab/ab12....pkl``).
        path: the file's full path, on the store's machine.
        size: its length in bytes.
    """

    name: str
    path: str
    size: int

    def open(self) -> io.BufferedIOBase:
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise UnreadableBlob(self.path, f"{exc.strerror or exc}").error() from None


@dataclass(frozen=True)
class ToPickle:
    """A value the store pickles when it writes it, straight into a blob file when it
    is big, so a large input is never also held whole as bytes.

    Attributes:
        value: the value.
        what: what it is, for the error when it cannot be pickled ("the inputs of ...").
    """

    value: Any
    what: str

    def dump(self, file: Writable) -> None:
        """Pickle the value into ``file``, in pieces.

        Raises:
            QflowSerializationError: the value cannot be pickled.
        """
        try:  # protocol 5: numpy hands the pickler its buffer, never a copy of it
            cloudpickle.Pickler(file, protocol=5).dump(self.value)
        except Exception as exc:
            raise QflowSerializationError(f"{self.what} cannot be pickled: {exc!r}.") from exc


@dataclass(frozen=True)
class DerivedOutput:
    """A stored value that is a container of other nodes' outputs, kept as the recipe
    (an expression over those node ids) instead of a second copy of their data.

    A list of eight 50 MiB outputs would otherwise be pickled again as one 400 MiB
    value: stored once per node that holds it, and held whole by the dispatcher.
    """

    expr: Any  # a qflow.core.graph.Expr: refs() and evaluate(values)

    def resolve(self, node_value: Callable[[int], Any]) -> Any:
        return self.expr.evaluate({r: node_value(r) for r in set(self.expr.refs())})


def loads(
    blob: bytes | LazyBlob | UnreadableBlob, node_value: Callable[[int], Any] | None = None
) -> Any:
    """Unpickle a stored value, raising StoreError for one that cannot be read.

    A :class:`LazyBlob` is unpickled as it streams in, so a big array is held once.
    ``node_value(node_id)`` gives the outputs a :class:`DerivedOutput` is made of.
    """
    if isinstance(blob, UnreadableBlob):
        raise blob.error()
    if isinstance(blob, LazyBlob):
        with blob.open() as f:
            value = cloudpickle.load(f)
    else:
        value = cloudpickle.loads(blob)
    if isinstance(value, DerivedOutput):
        if node_value is None:
            raise StoreError(
                "This stored value is built from other nodes' outputs; read it "
                "through qflow.get_result(...), which knows those nodes."
            )
        return value.resolve(node_value)
    return value


#: Columns of a node row. ``output`` is the cloudpickled value.
NODE_FIELDS = (
    "dispatch_id",
    "node_id",
    "name",
    "kind",
    "parents",
    "status",
    "start_time",
    "end_time",
    "error",
    "stdout",
    "stderr",
    "output",
    "ray_node_id",
    "sublattice_id",
    "output_text",
    "executor",
    "slurm_job_id",
    "inputs_text",
    "host",
)


class SortKey(StrEnum):
    """Columns a dispatch list can be sorted by."""

    CREATED = "created_at"
    NAME = "name"
    STATUS = "status"
    STARTED = "start_time"
    ENDED = "end_time"


#: The largest page offset a query may ask for: SQLite's integers stop at 2**63.
MAX_OFFSET = 2**62
#: The longest search text: longer LIKE patterns are refused by SQLite as too complex.
MAX_SEARCH_CHARS = 1000


@dataclass(frozen=True)
class DispatchQuery:
    """What :meth:`ResultStore.search_dispatches` returns a page of.

    Args:
        status: only this status (any of :class:`qflow.Status`), or all.
        text: a substring of the name or of a tag, or a prefix of the id.
        sort: a :class:`SortKey` value.
        descending: newest (or largest) first.
        offset, limit: the page; ``limit`` is 1 to 500.
    """

    status: str | None = None
    text: str = ""
    sort: SortKey = SortKey.CREATED
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "sort", SortKey(self.sort))
        except ValueError:
            raise StoreError(
                f"Cannot sort dispatches by {self.sort!r}; valid keys are "
                f"{', '.join(k.value for k in SortKey)}."
            ) from None
        if not (isinstance(self.limit, int) and 1 <= self.limit <= 500):
            raise StoreError(f"A page holds 1 to 500 dispatches; got limit={self.limit!r}.")
        if not (isinstance(self.offset, int) and 0 <= self.offset <= MAX_OFFSET):
            raise StoreError(
                f"offset is a whole number from 0 to {MAX_OFFSET:,} (a page "
                f"past every dispatch there could be); got {self.offset!r}."
            )
        if not isinstance(self.text, str) or len(self.text) > MAX_SEARCH_CHARS:
            got = len(self.text) if isinstance(self.text, str) else repr(self.text)
            raise StoreError(
                f"Search text is at most {MAX_SEARCH_CHARS} characters (a name, a "
                f"tag or the start of an id); got {got}."
            )


@dataclass(frozen=True)
class MetricPoint:
    """One value of a metric an electron logged (:func:`qflow.log_metric`).

    ``error`` is the value's standard error, if known; ``meta`` is JSON saying how to
    chart it (``unit``, ``x``, ``chart``, ``reference``), if given.
    """

    node_id: int | None
    name: str
    step: float | None
    value: float
    time: float
    error: float | None = None
    meta: str | None = None


@dataclass(frozen=True)
class DispatchPage:
    """A page of dispatch rows (:data:`STATUS_FIELDS` plus ``nodes_total`` and
    ``nodes_done``), how many match in all, and the count per status."""

    rows: list[dict[str, Any]]
    total: int
    counts: dict[str, int]


class ResultStore(abc.ABC):
    """Persists dispatches and their nodes. Rows are plain dicts keyed by the fields above.

    Implementations must be safe to use from several threads and processes at once.
    """

    #: Where the store lives: a database file (its folder is the ``QFLOW_HOME``), a
    #: server's URL, or ``":memory:"``.
    path: str

    @abc.abstractmethod
    def create_dispatch(self, dispatch: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> None:
        """Insert a dispatch and all its nodes in one transaction."""

    @abc.abstractmethod
    def update_dispatch(
        self, dispatch_id: str, *, only_if_unfinished: bool = False, **fields: Any
    ) -> bool:
        """Set fields of a dispatch row; with ``only_if_unfinished``, only while it has no
        end time. True if a row changed."""

    @abc.abstractmethod
    def update_nodes(self, dispatch_id: str, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Set fields of several node rows in one transaction."""

    @abc.abstractmethod
    def end_dispatch(self, dispatch_id: str, status: str, error: str | None) -> bool:
        """End a dispatch nothing will finish: set its status, error and end time, and
        cancel its unfinished nodes. False, changing nothing, if it had already ended."""

    @abc.abstractmethod
    def claim(self, dispatch_ids: Sequence[str], owner: str, heartbeat: float) -> None:
        """Record who runs these dispatches, and when it was last alive."""

    @abc.abstractmethod
    def match_ids(self, prefix: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` top-level dispatch ids starting with ``prefix``, sorted."""

    @abc.abstractmethod
    def get_status(self, dispatch_id: str) -> dict[str, Any] | None:
        """The :data:`STATUS_FIELDS` of a dispatch (no blobs), or None."""

    @abc.abstractmethod
    def unfinished(self) -> list[dict[str, Any]]:
        """The :data:`STATUS_FIELDS` of every dispatch without an end time."""

    @abc.abstractmethod
    def delete_dispatches(self, dispatch_ids: Sequence[str]) -> int:
        """Delete dispatches, their nodes, their sublattices and the blobs only they
        used; return how many dispatch rows went."""

    @abc.abstractmethod
    def finished_before(self, iso_time: str) -> list[str]:
        """Top-level dispatches that ended before ``iso_time``."""

    @abc.abstractmethod
    def size_bytes(self) -> int:
        """What the store takes on disk, blobs included."""

    @abc.abstractmethod
    def get_dispatch(self, dispatch_id: str) -> dict[str, Any] | None:
        """The dispatch row, or None."""

    @abc.abstractmethod
    def get_nodes(self, dispatch_id: str) -> list[dict[str, Any]]:
        """The node rows of a dispatch, by node id."""

    @abc.abstractmethod
    def list_dispatches(self, limit: int = 20) -> list[dict[str, Any]]:
        """Top-level dispatches, newest first, without blobs."""

    @abc.abstractmethod
    def search_dispatches(self, query: DispatchQuery) -> DispatchPage:
        """One page of top-level dispatches matching ``query``, with status counts and
        each row's node progress; no blobs are read."""

    @abc.abstractmethod
    def get_node_texts(self, dispatch_id: str) -> list[dict[str, Any]]:
        """The node rows of a dispatch without the ``output`` blob (its ``output_text``
        instead), by node id: what readers that never unpickle need."""

    @abc.abstractmethod
    def get_node_states(self, dispatch_id: str) -> list[tuple[Any, ...]]:
        """``(node_id, status, start_time, end_time, ray_node_id, slurm_job_id,
        sublattice_id, host)`` per node, by node id: what changes while a dispatch runs."""

    @abc.abstractmethod
    def children(self, dispatch_id: str) -> list[dict[str, Any]]:
        """The :data:`STATUS_FIELDS` (and ``parent_node_id``) of a dispatch's sublattices."""

    @abc.abstractmethod
    def add_metrics(self, dispatch_id: str, rows: Sequence[MetricPoint]) -> None:
        """Append metric values logged by a dispatch's electrons."""

    @abc.abstractmethod
    def get_metrics(self, dispatch_ids: Sequence[str]) -> dict[str, list[MetricPoint]]:
        """Every metric value of these dispatches, in the order they were logged."""

    @abc.abstractmethod
    def change_marker(self) -> Any:
        """A value that differs after any write to the store, by any process; cheap
        enough to poll a few times a second."""

    def with_lazy_blobs(self) -> ResultStore:
        """This store, reading values kept in files as :class:`LazyBlob` (read when
        used) rather than as bytes; a store that keeps no files returns itself."""
        return self

    def blob_file(self, name: str) -> BlobFile | UnreadableBlob:
        """The file ``name`` that a :class:`BlobFile` of this store names."""
        return UnreadableBlob(name, "this store keeps no values in files")

    def export(self, dispatch_id: str) -> dict[str, Any]:
        """A dispatch and its nodes (and their sublattices) as plain data."""
        nodes = self.get_nodes(dispatch_id)
        subs = [self.export(n["sublattice_id"]) for n in nodes if n.get("sublattice_id")]
        return {
            "dispatch": self.get_dispatch(dispatch_id),
            "nodes": nodes,
            "subs": subs,
            "metrics": self.get_metrics([dispatch_id])[dispatch_id],
        }

    def import_(self, data: dict[str, Any], **overrides: Any) -> str:
        """Insert what :meth:`export` produced, with dispatch fields overridden."""
        dispatch = {**data["dispatch"], **overrides}
        old_id, new_id = data["dispatch"]["dispatch_id"], dispatch["dispatch_id"]
        for sub in data["subs"]:
            sub_id = sub["dispatch"]["dispatch_id"].replace(old_id, new_id, 1)
            self.import_(sub, dispatch_id=sub_id, parent_id=new_id)
        nodes = []
        for node in data["nodes"]:
            node = {**node, "dispatch_id": new_id}
            if node.get("sublattice_id"):
                node["sublattice_id"] = node["sublattice_id"].replace(old_id, new_id, 1)
            nodes.append(node)
        self.create_dispatch(dispatch, nodes)
        self.add_metrics(new_id, data.get("metrics", []))
        return new_id
