"""A stored dispatch's lattice and inputs, and its graph built again from them: the one
way every reader (redispatch, a service resuming or firing a trigger, a Result's
per-node options) rebuilds a stored graph, replaced electrons included."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qflow.core.graph import Graph
from qflow.store.base import loads

__all__ = ["StoredGraph", "stored_graph"]


@dataclass(frozen=True)
class StoredGraph:
    """What a top-level dispatch's row holds to build its graph again.

    Attributes:
        lattice: the dispatched lattice.
        inputs: ``{"args": (...), "kwargs": {...}}`` as dispatched.
        replace: the electrons a redispatch replaced, by name (or None).
    """

    lattice: Any
    inputs: dict[str, Any]
    replace: dict[str, Any] | None

    def build(self, lattice: Any = None) -> Graph:
        """The graph, built again (nothing runs) by ``lattice`` (default: the stored
        one), with the stored inputs and replaced electrons."""
        lat = self.lattice if lattice is None else lattice
        graph: Graph = lat.build_graph(
            *self.inputs["args"], _replace=self.replace, **self.inputs["kwargs"]
        )
        return graph


def stored_graph(row: Mapping[str, Any]) -> StoredGraph:
    """The :class:`StoredGraph` of a dispatch row (with its ``graph`` and ``inputs``).

    Raises:
        StoreError: the row holds no graph (a sublattice's), or it cannot be unpickled here.
    """
    from qflow.exceptions import StoreError

    if not row.get("graph"):
        raise StoreError(
            f"Dispatch {row.get('dispatch_id')} stores no graph of its own (a sublattice's "
            "graph is its parent's); use its top-level dispatch."
        )
    saved = loads(row["graph"])
    inputs = loads(row["inputs"]) if row.get("inputs") else {"args": (), "kwargs": {}}
    return StoredGraph(saved["lattice"], inputs, saved.get("replace") or None)
