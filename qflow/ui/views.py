"""What the UI and the CLI's JSON and CSV exports show of a dispatch: plain data read
from the store, never an unpickled value (outputs appear as the text recorded beside
them).

Example:
    >>> from qflow.store.sqlite import SQLiteStore
    >>> store = SQLiteStore(":memory:")
    >>> store.create_dispatch({"dispatch_id": "d", "name": "flow", "status": "COMPLETED",
    ...                        "created_at": "2026-01-01T00:00:00+00:00"},
    ...                       [{"node_id": 0, "name": "a", "kind": "electron",
    ...                         "status": "COMPLETED"}])
    >>> view = dispatch_view(store, "d")
    >>> view["name"], [n["name"] for n in view["nodes"]], view["progress"]
    ('flow', ['a'], {'done': 1, 'total': 1})
"""

from __future__ import annotations

import ast
import csv
import io
import json
from datetime import datetime
from typing import Any

from qflow.core.layout import layered
from qflow.store.base import ResultStore

#: Characters of stdout/stderr a dispatch view carries per node (the node view has all).
PREVIEW_CHARS = 300

_DISPATCH_TEXT = (
    "dispatch_id",
    "name",
    "status",
    "parent_id",
    "parent_node_id",
    "created_at",
    "start_time",
    "end_time",
    "error",
    "inputs_text",
    "result_text",
    "source",
    "graph_text",
    "tags",
)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _tags(text: Any) -> list[str]:
    """A dispatch's tags as a list (the store keeps them as JSON text)."""
    if isinstance(text, list):
        return text
    try:
        tags = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _parents(text: str | None) -> list[int]:
    try:
        return list(ast.literal_eval(text or "[]"))
    except (ValueError, SyntaxError):
        return []


def node_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A node as the dispatch view lists it: no full logs."""
    return {
        "node_id": row["node_id"],
        "name": row["name"],
        "kind": row["kind"],
        "status": row["status"],
        "parents": _parents(row.get("parents")),
        "start_time": row.get("start_time"),
        "end_time": row.get("end_time"),
        "runtime_s": _seconds(row.get("start_time"), row.get("end_time")),
        "ray_node_id": row.get("ray_node_id"),
        "host": row.get("host"),
        "sublattice_id": row.get("sublattice_id"),
        # How deep this sublattice nests (1: a child of a top-level dispatch).
        "sublattice_depth": (
            str(row.get("dispatch_id") or "").count("/") + 1
            if row["kind"] == "sublattice"
            else None
        ),
        "executor": row.get("executor"),
        "slurm_job_id": row.get("slurm_job_id"),
        "output_text": row.get("output_text"),
        "error": (row.get("error") or "")[:PREVIEW_CHARS] or None,
    }


def node_view(store: ResultStore, dispatch_id: str, node_id: int) -> dict[str, Any] | None:
    """One node with everything the store has on it, as text."""
    for row in store.get_node_texts(dispatch_id):
        if row["node_id"] == node_id:
            dispatch = store.get_dispatch(dispatch_id) or {}
            try:
                sources = json.loads(dispatch.get("electron_sources") or "{}")
            except ValueError:
                sources = {}
            return {
                **node_summary(row),
                "error": row.get("error"),
                "source": sources.get(row["name"]),
                "inputs_text": row.get("inputs_text"),
                "stdout": row.get("stdout") or "",
                "stderr": row.get("stderr") or "",
            }
    return None


def breadcrumbs(store: ResultStore, dispatch_id: str) -> list[dict[str, Any]]:
    """The chain of parents down to ``dispatch_id``: ``[{dispatch_id, name, node_id}]``."""
    chain: list[dict[str, Any]] = []
    current: str | None = dispatch_id
    while current is not None and len(chain) < 64:
        row = store.get_status(current)
        if row is None:
            break
        chain.append({"dispatch_id": current, "name": row["name"]})
        current = row.get("parent_id")
    return chain[::-1]


#: Sublattices whose loop results a dispatch's summary lists, at most.
SUMMARY_LINES = 50


def _loop_summary(nodes: list[dict[str, Any]]) -> str | None:
    return next(
        (
            n["output_text"]
            for n in nodes
            if n["name"] == "close_loop" and n["status"] == "COMPLETED" and n["output_text"]
        ),
        None,
    )


def dispatch_view(
    store: ResultStore, dispatch_id: str, with_layout: bool = True
) -> dict[str, Any] | None:
    """A dispatch, its nodes (with a layered layout), its sublattices and breadcrumbs."""
    row = store.get_dispatch(dispatch_id)
    if row is None:
        return None
    nodes = [node_summary(r) for r in store.get_node_texts(dispatch_id)]
    view: dict[str, Any] = {k: row.get(k) for k in _DISPATCH_TEXT}
    view["tags"] = _tags(view.get("tags"))
    view["runtime_s"] = _seconds(row.get("start_time"), row.get("end_time"))
    view["nodes"] = nodes
    # Parameter nodes (literal arguments) are neither work nor worth drawing: the
    # graph and the progress count the nodes that compute.
    computing = [n for n in nodes if n["kind"] != "parameter"]
    view["progress"] = {
        "done": sum(n["status"] == "COMPLETED" for n in computing),
        "total": len(computing),
    }
    view["sublattices"] = store.children(dispatch_id)
    # What a researcher reads first: a loop's result in one line (its close_loop
    # node's output), "energy -1.137270 Ha (exact ..., error ... mHa)"; or one line per
    # loop its sublattices ran (a scan's points, a QAOA's restarts), each named.
    view["summary"] = (
        _loop_summary(nodes)
        or "\n".join(
            f"{child['name']}: {line}"
            for child in view["sublattices"][:SUMMARY_LINES]
            for line in [_loop_summary(store.get_node_texts(child["dispatch_id"]))]
            if line
        )
        or None
    )
    view["breadcrumbs"] = breadcrumbs(store, dispatch_id)
    if with_layout:
        shown = {n["node_id"] for n in computing}
        layout = layered({n["node_id"]: [p for p in n["parents"] if p in shown] for n in computing})
        view["layout"] = {
            "width": layout.width,
            "height": layout.height,
            "nodes": {str(i): [p.x, p.y] for i, p in layout.nodes.items()},
        }
    return view


STATE_COLUMNS = (
    "node_id",
    "status",
    "start_time",
    "end_time",
    "ray_node_id",
    "slurm_job_id",
    "sublattice_id",
    "host",
)


def state_view(store: ResultStore, dispatch_id: str) -> dict[str, Any] | None:
    """What changes while a dispatch runs, compactly: its status and times, and one row
    per node in :data:`STATE_COLUMNS` order. What a live page polls on each change."""
    row = store.get_status(dispatch_id)
    if row is None:
        return None
    nodes = store.get_node_states(dispatch_id)
    return {
        "status": row["status"],
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "error": row["error"],
        "columns": STATE_COLUMNS,
        "nodes": nodes,
        "progress": {"done": sum(n[1] == "COMPLETED" for n in nodes), "total": len(nodes)},
    }


def metrics_view(store: ResultStore, dispatch_id: str) -> dict[str, Any]:
    """Every metric the dispatch and its sublattices logged, by name: points with their
    dispatch, node, step and error, in the order logged; how each is charted (its unit,
    x, chart and whether it is a reference, by name); and the name of each dispatch."""
    names: dict[str, str] = {}
    order: list[str] = []
    todo = [dispatch_id]
    while todo and len(order) < 10_000:
        current = todo.pop(0)
        order.append(current)
        for child in store.children(current):
            names[child["dispatch_id"]] = child["name"]
            todo.append(child["dispatch_id"])
    row = store.get_status(dispatch_id)
    names[dispatch_id] = row["name"] if row else dispatch_id
    metrics: dict[str, list[dict[str, Any]]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for did, points in store.get_metrics(order).items():
        for p in points:
            metrics.setdefault(p.name, []).append(
                {
                    "dispatch_id": did,
                    "node_id": p.node_id,
                    "step": p.step,
                    "value": p.value,
                    "error": p.error,
                    "time": p.time,
                }
            )
            if p.meta and p.name not in meta:
                try:
                    meta[p.name] = json.loads(p.meta)
                except ValueError:
                    pass
    return {"metrics": metrics, "meta": meta, "dispatch_names": names}


_CSV_COLUMNS = (
    "node_id",
    "name",
    "kind",
    "status",
    "start_time",
    "end_time",
    "runtime_s",
    "executor",
    "ray_node_id",
    "host",
    "slurm_job_id",
    "sublattice_id",
    "output_text",
    "error",
    "stdout",
    "stderr",
)


def with_logs(store: ResultStore, view: dict[str, Any]) -> dict[str, Any]:
    """``view`` with each node's full ``stdout`` and ``stderr`` added (for exports)."""
    texts = {r["node_id"]: r for r in store.get_node_texts(view["dispatch_id"])}
    for node in view["nodes"]:
        row = texts.get(node["node_id"], {})
        node["stdout"], node["stderr"] = row.get("stdout"), row.get("stderr")
    return view


def nodes_csv(view: dict[str, Any]) -> str:
    """The nodes of a :func:`dispatch_view` as CSV, one row a node."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for node in view["nodes"]:
        writer.writerow(node)
    return out.getvalue()
