"""Connecting to Ray: join a running cluster if there is one, else start a local one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ray

from qflow.exceptions import (
    ClusterConnectionError,
    ClusterError,
    InfeasibleResourceError,
)
from qflow.settings import Settings

SERVICE_NAME = "qflow-dispatcher"
SERVICE_NAMESPACE = "qflow"


# Ray's private APIs are used from this module only, each behind a fallback.


def ray_address_file() -> Path | None:
    """Ray's machine-wide file where ``ray start --head`` announces its address."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:
        return None
    return Path(get_ray_address_file(None))


def node_ip() -> str:
    """This machine's address as Ray would advertise it."""
    try:
        from ray._private.services import get_node_ip_address
    except ImportError:
        return "127.0.0.1"
    return get_node_ip_address()


def announced_address() -> str | None:
    """The head a ``ray start --head`` on this machine announced in Ray's address file.

    Only a head that still answers counts: ``ray start`` leaves the file behind when
    its head dies. Processes found by scanning (another script's in-process Ray, a
    stranger's cluster) are never joined.
    """
    try:
        from ray._private.utils import read_ray_address

        address = read_ray_address(None)
    except Exception:  # a private API; without it nothing is announced
        return None
    if not address:
        return None
    try:
        _probe(address, timeout=1.0)
    except ClusterConnectionError:
        return None
    return address


def ray_cli() -> str:
    """The ``ray`` command of the environment qflow runs in (not whichever is first on PATH)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def enable_token_auth() -> None:
    """Turn on Ray's token auth for this process when a token exists and nobody chose.

    Ray 2.60 heads started by ``ray start`` require a token. ``ray.init("auto")``
    enables it by itself; ``ray.init("ip:port")`` does not, and gets InvalidAuthToken.
    Setting RAY_AUTH_MODE after ``import ray`` is too late for Ray's C++ config, so
    Ray's own helper (which also reloads that config) is used.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token auth
        return
    with quiet_ray():  # its "token authentication is enabled" notice is Ray's, not news
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _probe(address: str, timeout: float = 3.0) -> None:
    """Fail fast on a host:port nobody listens on; ray.init would retry for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterConnectionError(
            f"No Ray cluster answers at {address!r} ({exc.strerror or exc}). Start one with "
            "`qflow start` (or `ray start --head`), fix RAY_ADDRESS, or unset it to let "
            "qflow start an embedded local Ray."
        ) from exc


def ensure_ray(settings: Settings) -> str:
    """Connect this process to Ray and say how: ``"existing"``, ``"joined"`` or ``"embedded"``.

    Raises:
        ClusterConnectionError: ``RAY_ADDRESS`` (or the given address) does not answer.
    """
    if ray.is_initialized():
        return "existing"
    # The dispatcher reads every node's outcome itself; a failed node's value ref is
    # dropped unread on purpose, so Ray's "Unhandled error" log line would be noise.
    # (Set when qflow starts Ray, not on import: importing qflow changes nothing.)
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    common: dict[str, Any] = dict(
        log_to_driver=False, configure_logging=True, logging_level=logging.ERROR
    )
    address, _source = chosen_address(settings)
    if address is not None:
        _probe(address)
        enable_token_auth()
        try:
            with quiet_ray():
                ray.init(address=address, **common)
        except Exception as exc:
            raise ClusterConnectionError(
                f"No Ray cluster answers at {address!r} ({type(exc).__name__}: {exc}). "
                "Start one with `qflow start` (or `ray start --head`), fix RAY_ADDRESS, or "
                "unset it to let qflow start an embedded local Ray."
            ) from exc
        return "joined"
    try:
        # "local": start a fresh, private Ray even if Ray's address file points at a head
        # that is gone (a plain ray.init() would try to join it and fail).
        with quiet_ray():
            ray.init(
                address="local",
                num_cpus=settings.num_cpus,
                resources=dict(settings.resources) or None,
                include_dashboard=False,
                **common,
            )
    except Exception as exc:
        raise ClusterError(f"Could not start a local Ray: {exc!r}") from exc
    return "embedded"


def chosen_address(settings: Settings) -> tuple[str | None, str]:
    """The cluster the user chose, and how: ``(address, source)``, or ``(None, "embedded")``.

    In order: ``RAY_ADDRESS`` (or an explicit address), the head ``qflow start``
    recorded under ``$QFLOW_HOME``, the head ``ray start --head`` announced. Nothing
    else: with none of these, qflow starts its own private Ray.
    """
    if settings.ray_address:
        return settings.ray_address, "RAY_ADDRESS"
    from qflow._head_state import live_address

    address = live_address(settings)
    if address is not None:
        return address, "qflow start"
    address = announced_address()
    if address is not None:
        return address, "ray start"
    return None, "embedded"


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Hide Ray's start-up chatter (the token-auth notice, C++ log lines) from users."""
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def same_address(a: str, b: str) -> bool:
    """Whether two ``host:port`` Ray addresses name the same head on this machine or
    another (``127.0.0.1`` and this machine's own address are the same host).

    Example:
        >>> same_address("127.0.0.1:6379", "localhost:6379"), same_address("a:1", "a:2")
        (True, False)
    """
    (host_a, _, port_a), (host_b, _, port_b) = a.rpartition(":"), b.rpartition(":")
    if port_a != port_b:
        return False
    local = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
    with contextlib.suppress(Exception):
        local.add(node_ip())
    return host_a == host_b or (host_a in local and host_b in local)


def find_service() -> object | None:
    """The detached dispatcher actor of ``qflow start``, if this cluster has one."""
    try:
        return ray.get_actor(SERVICE_NAME, namespace=SERVICE_NAMESPACE)
    except ValueError:
        return None


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
#: asks Ray's GCS twice (about 1 ms), which on a small dispatch was a fifth of its cost.
#: A shape that vanished within that time lets a task wait for it, as Ray itself would.
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


def no_longer_feasible(request: Mapping[str, float], what: str) -> str | None:
    """Why ``request``, which some node could hold when it was submitted, can never be
    held now (the nodes offering it left the cluster), or None while it still can.

    Judged on the nodes alive now and the node types an autoscaler may add; where an
    autoscaler runs whose node types cannot be read, it may still add one: None.
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
