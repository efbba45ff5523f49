"""Where a Ray task or actor can be placed: the shapes of the cluster's nodes (and of
the node types an autoscaler may add), whether a request fits any of them, and why not.

Read by the dispatcher, the executors and the loop pool; Ray's private state API is used
here and in :mod:`qflow.runtime.ray_cluster` only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import ray

from qflow.exceptions import InfeasibleResourceError

__all__ = [
    "autoscaler_node_types_unknown",
    "describe_shortfall",
    "ensure_feasible",
    "missing_resources",
    "no_longer_feasible",
    "node_shapes",
]


#: Node id -> (address, resources) of every node this process has seen alive: Ray
#: reports a dead node without its resources, and a lost one is named by what it offered.
_seen_nodes: dict[str, tuple[str, dict[str, float]]] = {}


def node_shapes() -> list[dict[str, float]]:
    """The resources of every alive node, and of every node type an autoscaler may add."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    for n in alive:
        _seen_nodes[n.get("NodeID", "?")] = (
            n.get("NodeManagerAddress", "?"),
            dict(n.get("Resources", {})),
        )
    shapes = [dict(n.get("Resources", {})) for n in alive]
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # a private API; without it, alive nodes are all we know
        config = None
    if config is not None:
        shapes += [
            dict(group.resources) for group in config.node_group_configs if group.max_count != 0
        ]
    return shapes


#: Seconds the node shapes read for one dispatch's check serve the next: reading them
#: asks Ray's GCS, a noticeable part of a small dispatch's cost. A shape that vanished
#: within that time lets a task wait for it, as Ray itself would.
SHAPES_MAX_AGE_S = 2.0
_shapes_cache: tuple[str, float, list[dict[str, float]]] | None = None


def _recent_shapes(max_age: float = SHAPES_MAX_AGE_S) -> list[dict[str, float]]:
    """:func:`node_shapes` of the connected cluster, as read at most ``max_age`` seconds
    ago in this process."""
    global _shapes_cache
    now, cluster = time.monotonic(), ray.get_runtime_context().gcs_address
    cached = _shapes_cache
    if cached is None or cached[0] != cluster or max_age <= 0 or now - cached[1] > max_age:
        cached = _shapes_cache = (cluster, now, node_shapes())
    return cached[2]


def missing_resources(
    request: Mapping[str, float], shapes: list[dict[str, float]]
) -> dict[str, float] | None:
    """None if some node shape holds all of ``request``; else what the closest lacks."""
    best: dict[str, float] | None = None
    for shape in shapes:
        lack = {k: v for k, v in request.items() if v > 0 and shape.get(k, 0.0) < v}
        if not lack:
            return None
        if best is None or len(lack) < len(best):
            best = lack
    return best if best is not None else dict(request)


def describe_shortfall(
    request: Mapping[str, float], shapes: list[dict[str, float]], what: str
) -> str:
    lack = missing_resources(request, shapes) or {}
    most = {k: max((s.get(k, 0.0) for s in shapes), default=0.0) for k in lack}
    parts = [f"{k!r}: asked {v:g}, the largest node has {most[k]:g}" for k, v in lack.items()]
    return (
        f"{what} asks for {dict(request)}, which no node of this Ray cluster can ever "
        f"hold ({'; '.join(parts)}). Lower the request, or add a node that offers it: "
        "`qflow start --resources '{\"name\": 1}'`, QFLOW_RESOURCES for the embedded Ray, "
        "or a node type in ray-cluster.yaml."
    )


def ensure_feasible(request: Mapping[str, float], what: str) -> None:
    """Raise :class:`InfeasibleResourceError` if no node could ever hold ``request``
    (judged on recently read node shapes, and on fresh ones before refusing)."""
    if missing_resources(request, _recent_shapes()) is None:
        return
    shapes = _recent_shapes(max_age=0.0)  # a refusal is never judged on old news
    if missing_resources(request, shapes) is not None and not autoscaler_node_types_unknown():
        raise InfeasibleResourceError(describe_shortfall(request, shapes, what))


def autoscaler_node_types_unknown() -> bool:
    """Whether an autoscaler runs whose node types this process cannot read.

    Ray's v2 autoscaler publishes its node types (read by :func:`node_shapes`); the v1
    monitor (``ray start --autoscaling-config``, the cluster launcher's default) only
    publishes its status. Then a request no current node holds may still be met by a
    node it launches, so it is not refused up front: the autoscaler decides.
    """
    try:
        from ray._private.state import state
        from ray.experimental.internal_kv import _internal_kv_get

        if state.get_cluster_config() is not None:
            return False
        status = _internal_kv_get(b"__autoscaling_status")
        if status is None:
            return False
        mapping = json.loads(status).get("autoscaler_report", {}).get("node_type_mapping", {})
    except Exception:  # private APIs; without them, judge by the nodes alone
        return False
    # Without an autoscaling config (plain `ray start`, an embedded Ray) the monitor runs
    # a read-only provider that names each node's type after the node: nothing to launch.
    return any(kind != f"node_{node_id}" for node_id, kind in mapping.items())


def no_longer_feasible(
    request: Mapping[str, float], what: str, *, only_if_lost: bool = False
) -> str | None:
    """Why ``request``, which some node could hold when it was submitted, can never be
    held now (the nodes offering it left the cluster), or None while it still can.

    Judged on the nodes alive now and the node types an autoscaler may add; where an
    autoscaler runs whose node types cannot be read, it may still add one: None. With
    ``only_if_lost``, also None when no node this process saw alive offered it (the
    request may never have fitted: :func:`describe_shortfall` says so better).
    """
    shapes = node_shapes()
    lack = missing_resources(request, shapes)
    if lack is None or autoscaler_node_types_unknown():
        return None
    dead = {n.get("NodeID") for n in ray.nodes() if not n.get("Alive")}
    lost = [
        (node_id, address)
        for node_id, (address, resources) in _seen_nodes.items()
        if node_id in dead and all(resources.get(k, 0.0) >= v for k, v in lack.items())
    ]
    if only_if_lost and not lost:
        return None
    gone = (
        ", ".join(f"node {node_id[:12]} at {address}" for node_id, address in lost)
        or "before this process saw them"
    )
    names = ", ".join(repr(k) for k in lack)
    return (
        f"{what} asks for {dict(request)}, and no node of the cluster can hold it any "
        f"more: the node(s) that offered {names} left the cluster ({gone}), and no "
        "alive node or autoscaler node type offers it. Start a node that offers it "
        "(`ray start --address ... --resources ...`) and redispatch "
        "(`qflow.redispatch(id, reuse_previous_results=True)` skips what completed)."
    )
