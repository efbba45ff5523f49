"""What a dispatch produced, read from the results store."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import datetime
from typing import Any

from qflow.core.status import Status
from qflow.core.stored import stored_graph
from qflow.exceptions import StoreError
from qflow.store.base import LazyBlob, MetricPoint, ResultStore, UnreadableBlob, loads

__all__ = ["Result", "TransportableObject"]


class TransportableObject:
    """A value as Covalent hands it out: call :meth:`get_deserialized` for the value.

    It also compares equal to the value, so new code can skip the call.

    Example:
        >>> import qflow
        >>> obj = qflow.TransportableObject({"a": 1})
        >>> obj.get_deserialized(), obj == {"a": 1}
        ({'a': 1}, True)
    """

    __slots__ = ("_blob", "_loaded", "_node_value", "_value")

    def __init__(self, obj: Any = None) -> None:
        self._blob: bytes | LazyBlob | UnreadableBlob | None = None
        self._value, self._loaded = obj, True
        self._node_value: Callable[[int], Any] | None = None

    @classmethod
    def _stored(
        cls,
        blob: bytes | LazyBlob | UnreadableBlob | None,
        node_value: Callable[[int], Any] | None = None,
    ) -> TransportableObject:
        """A stored pickle, unpickled on first use."""
        out = cls()
        out._blob, out._loaded, out._node_value = blob, False, node_value
        return out

    def get_serialized(self) -> bytes:
        """The pickled value."""
        if self._blob is None or isinstance(self._blob, UnreadableBlob):
            import cloudpickle

            blob: bytes = cloudpickle.dumps(self.get_deserialized())
            return blob
        if isinstance(self._blob, LazyBlob):
            return self._blob.read()
        return self._blob

    @property
    def object_string(self) -> str:
        """``str()`` of the value, as Covalent shows it."""
        return str(self.get_deserialized())

    @property
    def python_version(self) -> str:
        import platform

        return platform.python_version()

    def get_deserialized(self) -> Any:
        """The output value."""
        if not self._loaded:
            self._value = loads(self._blob, self._node_value) if self._blob is not None else None
            self._loaded = True
        return self._value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TransportableObject):
            other = other.get_deserialized()
        return bool(self.get_deserialized() == other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if isinstance(self._blob, UnreadableBlob):
            return f"TransportableObject(<unreadable: {self._blob.path}>)"
        return f"TransportableObject({self.get_deserialized()!r})"


class Inputs(dict[str, Any]):
    """``{"args": (...), "kwargs": {...}}``; also Covalent's ``.get_deserialized()``."""

    def get_deserialized(self) -> dict[str, Any]:
        return dict(self)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Result:
    """The record of one dispatch: status, return value, errors and every node.

    Get one with :func:`qflow.get_result`; it reads the store once when made.
    ``print(result)`` shows Covalent's summary.
    """

    # Covalent's status constants on the class: ``result.status == Result.COMPLETED``.
    NEW_OBJ = Status.NEW_OBJECT
    NEW_OBJECT = Status.NEW_OBJECT
    RUNNING = Status.RUNNING
    COMPLETED = Status.COMPLETED
    FAILED = Status.FAILED
    CANCELLED = Status.CANCELLED

    def __init__(
        self,
        store: ResultStore,
        row: dict[str, Any],
        *,
        workflow_output: bool = True,
        intermediate_outputs: bool = True,
        sublattice_results: bool = True,
    ) -> None:
        self._store = store
        self._row = row
        #: What :func:`qflow.get_result` was asked to load, as Covalent's flags say:
        #: left out, the workflow's output and node outputs read as None, sublattice
        #: results as None, and none of it is read from the store.
        self._workflow_output = workflow_output
        self._intermediate_outputs = intermediate_outputs
        self._sublattice_results = sublattice_results
        self._nodes: list[dict[str, Any]] | None = None
        self._by_id: dict[int, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return (
            f"Result(dispatch_id={self.dispatch_id!r}, lattice={self.lattice_name!r}, "
            f"status={str(self.status)!r})"
        )

    @property
    def dispatch_id(self) -> str:
        return str(self._row["dispatch_id"])

    @property
    def lattice_name(self) -> str:
        return str(self._row["name"])

    @property
    def status(self) -> Status:
        return Status(self._row["status"])

    @property
    def result(self) -> Any:
        """The lattice's return value, or None unless COMPLETED (or when
        ``get_result(..., workflow_output=False)`` left it out)."""
        blob = self._row.get("result")
        if self.status != Status.COMPLETED or blob is None or not self._workflow_output:
            return None
        return loads(blob, self._node_value)

    @property
    def error(self) -> str | None:
        """Each failed electron with its error, or None."""
        return self._row.get("error")

    @property
    def start_time(self) -> datetime | None:
        return _dt(self._row.get("start_time"))

    @property
    def end_time(self) -> datetime | None:
        return _dt(self._row.get("end_time"))

    @property
    def inputs(self) -> Inputs:
        """``{"args": (...), "kwargs": {...}}`` as dispatched."""
        blob = self._row.get("inputs")
        return Inputs(loads(blob) if blob else {"args": (), "kwargs": {}})

    @property
    def encoded_result(self) -> TransportableObject:
        """The return value, wrapped as Covalent wraps it."""
        blob = (
            self._row.get("result")
            if self.status == Status.COMPLETED and self._workflow_output
            else None
        )
        return TransportableObject._stored(blob, self._node_value)

    @property
    def num_nodes(self) -> int:
        """How many nodes the transport graph has (parameters included, as in Covalent)."""
        return len(self._node_rows())

    @property
    def root_dispatch_id(self) -> str:
        """The top-level dispatch: this one, or the outermost lattice of a sublattice."""
        row, seen = self._row, 0
        while row.get("parent_id") and seen < 64:
            parent = self._store.get_status(row["parent_id"])
            if parent is None:
                break
            row, seen = parent, seen + 1
        return str(row["dispatch_id"])

    @property
    def lattice(self) -> Any:
        """The dispatched :class:`qflow.Lattice`, with ``transport_graph`` holding this
        dispatch's nodes (statuses, outputs, times), as Covalent's ``result.lattice``.

        Raises:
            StoreError: the lattice cannot be unpickled here (its module is missing).
        """
        lat = self._saved_lattice()
        from qflow.covalent.transport import TransportGraph

        nodes, edges = {}, []
        for d in self.get_all_node_results():
            nid = d["node_id"]
            nodes[nid] = {
                "name": d["node_name"],
                "kind": d["kind"],
                "status": d["status"],
                "output": d["output"],
                "error": d["error"],
                "start_time": d["start_time"],
                "end_time": d["end_time"],
                "stdout": d["stdout"],
                "stderr": d["stderr"],
                "sublattice_result": d["sublattice_result"],
            }
            if d["kind"] == "sublattice":  # Covalent's key for the child dispatch's id
                nodes[nid]["sub_dispatch_id"] = d["sub_dispatch_id"]
            if d["kind"] == "parameter" and d["output"] is not None:
                nodes[nid]["value"] = d["output"].get_deserialized()
            edges += [(p, nid) for p in d["parents"]]
        lat.transport_graph = TransportGraph(nodes, edges, metadata=lambda: self._metadata(lat))
        return lat

    def _saved_lattice(self) -> Any:
        blob = self._store.get_dispatch(self.dispatch_id) or {}
        if not blob.get("graph"):
            raise StoreError(
                f"Dispatch {self.dispatch_id} is a sublattice, whose lattice is "
                f"kept by its parent {self._row.get('parent_id')}."
            )
        try:
            return loads(blob["graph"])["lattice"]
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"The lattice of {self.dispatch_id} cannot be unpickled here "
                f"({exc!r}); import the module that defines it first."
            ) from exc

    def _metadata(self, lat: Any) -> dict[int, dict[str, Any]]:
        """Per-node options, from building the graph again (nothing runs)."""
        import copy

        from qflow.covalent.transport import node_metadata

        # Built on a copy: ``lat`` keeps this dispatch's graph view.
        graph = stored_graph(self._row).build(copy.copy(lat))
        return {n.node_id: node_metadata(n) for n in graph.nodes}

    def __str__(self) -> str:
        inputs = self.inputs
        lines = [
            "Lattice Result",
            "==============",
            f"status: {self.status}",
            f"result: {self.result if self.status == Status.COMPLETED else None}",
            f"input args: {[str(a) for a in inputs['args']]}",
            f"input kwargs: { {k: str(v) for k, v in inputs['kwargs'].items()} }",
            f"error: {self.error}",
            "",
            f"start_time: {self.start_time}",
            f"end_time: {self.end_time}",
            "",
            f"dispatch_id: {self.dispatch_id}",
            "",
            "Node Outputs",
            "------------",
        ]
        for r in self._node_rows():
            lines.append(f"{r['name']}({r['node_id']}): {r.get('output_text')}")
        return "\n".join(lines) + "\n"

    @property
    def graph_text(self) -> str:
        """The transport graph, one node a line."""
        if self._row.get("graph_text"):  # stores written before it was made on reading
            return str(self._row["graph_text"])
        from qflow.core.graph import describe_nodes

        return describe_nodes(
            self.lattice_name,
            (
                (r["node_id"], r["name"], r["kind"], ast.literal_eval(r["parents"] or "[]"))
                for r in self._node_rows()
            ),
        )

    def _node_rows(self) -> list[dict[str, Any]]:
        if self._nodes is None:
            if self._intermediate_outputs:
                self._nodes = self._store.get_nodes(self.dispatch_id)
            else:  # everything but the outputs, which are never read
                self._nodes = [
                    {**r, "output": None} for r in self._store.get_node_texts(self.dispatch_id)
                ]
        return self._nodes

    def _node_value(self, node_id: int) -> Any:
        """A node's output value (what a DerivedOutput is built from)."""
        if self._by_id is None:
            rows = (
                self._node_rows()
                if self._intermediate_outputs
                else self._store.get_nodes(self.dispatch_id)
            )
            self._by_id = {r["node_id"]: r for r in rows}
        row = self._by_id.get(node_id)
        if row is None or row["output"] is None:
            raise StoreError(
                f"Dispatch {self.dispatch_id} has no stored output for node "
                f"{node_id}, which its result is built from."
            )
        return loads(row["output"], self._node_value)

    def _node_dict(self, row: dict[str, Any]) -> dict[str, Any]:
        sub_id = row.get("sublattice_id")
        sub_row = self._store.get_dispatch(sub_id) if sub_id and self._sublattice_results else None
        return {
            "node_id": row["node_id"],
            "node_name": row["name"],
            "kind": row["kind"],
            "parents": ast.literal_eval(row["parents"] or "[]"),
            "status": Status(row["status"]),
            "output": (
                TransportableObject._stored(row["output"], self._node_value)
                if row["output"] is not None
                else None
            ),
            "error": row["error"],
            "start_time": _dt(row["start_time"]),
            "end_time": _dt(row["end_time"]),
            "stdout": row["stdout"] or "",
            "stderr": row["stderr"] or "",
            "ray_node_id": row["ray_node_id"],
            "sublattice_result": Result(
                self._store,
                sub_row,
                workflow_output=self._workflow_output,
                intermediate_outputs=self._intermediate_outputs,
            )
            if sub_row
            else None,
            # A child dispatch's id is its parent's and its node's, known before it runs:
            # cancel() takes it while it runs, get_result() once it has ended.
            "sub_dispatch_id": (
                sub_id or f"{self.dispatch_id}/{row['node_id']}"
                if row["kind"] == "sublattice"
                else None
            ),
        }

    def get_node_result(self, node_id: int) -> dict[str, Any]:
        """One node: ``node_id, node_name, status, output, error, start_time, end_time,
        stdout, stderr, sublattice_result`` (and ``kind``, ``parents``, ``ray_node_id``)."""
        for row in self._node_rows():
            if row["node_id"] == node_id:
                return self._node_dict(row)
        ids = [r["node_id"] for r in self._node_rows()]
        raise KeyError(
            f"Dispatch {self.dispatch_id} has no node {node_id!r}; its node ids "
            f"are {ids[0]}..{ids[-1]}."
            if ids
            else f"Dispatch {self.dispatch_id} has no nodes."
        )

    def get_all_node_results(self) -> list[dict[str, Any]]:
        """Every node, as :meth:`get_node_result` gives it, in call order."""
        return [self._node_dict(r) for r in self._node_rows()]

    def get_metrics(self) -> dict[str, list[MetricPoint]]:
        """What the electrons logged with :func:`qflow.log_metric`, by metric name, in
        the order logged (each point has ``node_id, name, step, value, time``)."""
        out: dict[str, list[MetricPoint]] = {}
        for point in self._store.get_metrics([self.dispatch_id])[self.dispatch_id]:
            out.setdefault(point.name, []).append(point)
        return out

    def get_all_node_outputs(self) -> dict[str, TransportableObject | None]:
        """``{"name(node_id)": output}`` for every node, in call order."""
        return {
            f"{r['name']}({r['node_id']})": TransportableObject._stored(
                r["output"], self._node_value
            )
            if r["output"] is not None
            else None
            for r in self._node_rows()
        }
