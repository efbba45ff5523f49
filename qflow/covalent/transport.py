"""Covalent's ``transport_graph``: a read view of a lattice's nodes as a networkx graph.

``lattice.transport_graph`` (after :meth:`qflow.Lattice.build_graph`) and
``result.lattice.transport_graph`` give the same API Covalent code reads:
``_graph`` (a ``networkx.MultiDiGraph``), :meth:`TransportGraph.get_node_value`,
:meth:`TransportGraph.get_dependencies`.

Example:
    >>> import qflow
    >>> @qflow.electron
    ... def add(a, b):
    ...     return a + b
    >>> @qflow.lattice
    ... def flow(a):
    ...     return add(a, 2)
    >>> _ = flow.build_graph(1)
    >>> tg = flow.transport_graph
    >>> list(tg._graph.nodes), tg.get_node_value(1, "name"), tg.get_node_value(1, "value")
    ([0, 1, 2, 3], ':parameter:1', 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from qflow.core.graph import Const, Graph, Node, NodeKind

__all__ = ["TransportGraph", "node_metadata"]


def node_metadata(node: Node) -> dict[str, Any]:
    """A node's options in Covalent's metadata layout (``hooks.deps.bash`` and so on)."""
    opts = node.options
    if opts is None or node.kind in (NodeKind.OP, NodeKind.PARAMETER):
        return {"executor": None, "hooks": {"deps": {}, "call_before": [], "call_after": []}}
    from qflow.executors import executor_name

    deps = {"bash": opts.deps_bash.to_dict(), "pip": opts.deps_pip.to_dict()}
    hooks = {
        "deps": deps,
        "call_before": [_call_dict(c) for c in opts.call_before],
        "call_after": [_call_dict(c) for c in opts.call_after],
    }
    return {
        "executor": executor_name(opts.executor),
        "executor_data": {},
        "hooks": hooks,
        "deps": deps,
        "call_before": hooks["call_before"],
        "call_after": hooks["call_after"],
        "num_cpus": opts.num_cpus,
        "num_gpus": opts.num_gpus,
        "resources": dict(opts.resources or {}),
    }


def _call_dict(call: Any) -> dict[str, Any]:
    return {
        "type": "DepsCall",
        "short_name": "call",
        "attributes": {
            "func": getattr(call.func, "__name__", repr(call.func)),
            "retval_keyword": call.retval_keyword,
        },
    }


class TransportGraph:
    """The nodes of one lattice and their edges, with Covalent's read API.

    Node attributes: ``name``, ``kind``, ``status``, ``metadata``, ``value`` (a
    parameter's literal), ``output``, ``error``, ``start_time``, ``end_time``,
    ``stdout``, ``stderr`` and ``function`` (where known).
    """

    def __init__(
        self,
        nodes: Mapping[int, dict[str, Any]],
        edges: Iterable[tuple[int, int]],
        metadata: Callable[[], dict[int, dict[str, Any]]] | None = None,
    ) -> None:
        self._nodes = {int(k): dict(v) for k, v in nodes.items()}
        self._edges = list(edges)
        self._metadata = metadata
        self._nx: Any = None

    @classmethod
    def from_graph(cls, graph: Graph) -> TransportGraph:
        """The view of a graph just built (every node NEW_OBJECT, parameters COMPLETED)."""
        from qflow.core.status import Status

        nodes = {}
        for n in graph.nodes:
            param = n.kind is NodeKind.PARAMETER
            nodes[n.node_id] = {
                "name": n.name,
                "kind": str(n.kind),
                "function": n.fn,
                "status": Status.COMPLETED if param else Status.NEW_OBJECT,
                "value": n.expr.value if param and isinstance(n.expr, Const) else None,
                "metadata": node_metadata(n),
            }
        return cls(nodes, [(p, n.node_id) for n in graph.nodes for p in n.parents()])

    @property
    def _graph(self) -> Any:
        """The nodes and edges as a ``networkx.MultiDiGraph`` (node ids 0..n-1)."""
        if self._nx is None:
            import networkx as nx

            g = nx.MultiDiGraph()
            for nid in sorted(self._nodes):
                g.add_node(
                    nid,
                    **{
                        k: v for k, v in self._nodes[nid].items() if k not in ("function", "output")
                    },
                )
            g.add_edges_from(self._edges)
            self._nx = g
        return self._nx

    def get_internal_graph_copy(self) -> Any:
        """A copy of :attr:`_graph`."""
        return self._graph.copy()

    def get_node_value(self, node_id: int, key: str) -> Any:
        """One attribute of one node, e.g. ``get_node_value(0, "status")``.

        Raises:
            KeyError: no such node, or no such attribute (the message lists the valid ones).
        """
        if node_id not in self._nodes:
            raise KeyError(f"No node {node_id!r}; node ids are 0..{len(self._nodes) - 1}.")
        attrs = self._nodes[node_id]
        if key == "metadata" and "metadata" not in attrs and self._metadata is not None:
            for nid, meta in self._metadata().items():
                if nid in self._nodes:
                    self._nodes[nid]["metadata"] = meta
        if key not in attrs:
            raise KeyError(f"Node {node_id} has no {key!r}; it has {sorted(attrs)}.")
        return attrs[key]

    def set_node_value(self, node_id: int, key: str, value: Any) -> None:
        """Change one attribute of this view (the stored record is not changed)."""
        self._nodes[node_id][key] = value
        self._nx = None

    def get_dependencies(self, node_id: int) -> list[int]:
        """The ids of the nodes ``node_id`` reads or waits for."""
        return sorted({p for p, c in self._edges if c == node_id})

    def __len__(self) -> int:
        return len(self._nodes)
