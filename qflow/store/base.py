"""The results-store interface, so that a server database can replace SQLite."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

#: Columns of a dispatch row.
DISPATCH_FIELDS = (
    "dispatch_id", "name", "status", "parent_id", "parent_node_id", "created_at",
    "start_time", "end_time", "error", "inputs", "result", "graph", "graph_text",
)
#: Columns of a node row. ``output`` is the cloudpickled value.
NODE_FIELDS = (
    "dispatch_id", "node_id", "name", "kind", "parents", "status", "start_time",
    "end_time", "error", "stdout", "stderr", "output", "ray_node_id", "sublattice_id",
)


class ResultStore(abc.ABC):
    """Persists dispatches and their nodes. Rows are plain dicts keyed by the fields above.

    Implementations must be safe to use from several threads and processes at once.
    """

    @abc.abstractmethod
    def create_dispatch(self, dispatch: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> None:
        """Insert a dispatch and all its nodes in one transaction."""

    @abc.abstractmethod
    def update_dispatch(self, dispatch_id: str, **fields: Any) -> None:
        """Set fields of a dispatch row."""

    @abc.abstractmethod
    def update_nodes(self, dispatch_id: str, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Set fields of several node rows in one transaction."""

    @abc.abstractmethod
    def get_dispatch(self, dispatch_id: str) -> dict[str, Any] | None:
        """The dispatch row, or None."""

    @abc.abstractmethod
    def get_nodes(self, dispatch_id: str) -> list[dict[str, Any]]:
        """The node rows of a dispatch, by node id."""

    @abc.abstractmethod
    def list_dispatches(self, limit: int = 20) -> list[dict[str, Any]]:
        """Top-level dispatches, newest first, without blobs."""

    def export(self, dispatch_id: str) -> dict[str, Any]:
        """A dispatch and its nodes (and their sublattices) as plain data."""
        nodes = self.get_nodes(dispatch_id)
        subs = [self.export(n["sublattice_id"]) for n in nodes if n.get("sublattice_id")]
        return {"dispatch": self.get_dispatch(dispatch_id), "nodes": nodes, "subs": subs}

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
        return new_id
