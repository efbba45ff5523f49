"""Warm loop actors kept between variational loops, so that the next loop starts in
milliseconds instead of paying a fresh process and a PennyLane import (about 1.3 s).

One detached registry actor (``qflow-loop-pool``) owns every loop actor and its
placement group. A loop acquires an idle actor of the same resource bundle, or has a
new one made; when the loop ends, its actor stays idle for the loop's ``keep_warm``
seconds and is then stopped and its placement group removed. Owned by the registry,
the actors live exactly as long as it does.

Example:
    >>> bundle_key({"CPU": 1.0, "qpu:x": 0.001}) == bundle_key({"qpu:x": 0.001, "CPU": 1})
    True
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import ray

from qflow.core.tracebacks import remote_cause
from qflow.loops import warm as warm

POOL_NAME = "qflow-loop-pool"
#: Loop actors are named ``qflow-warm-<bundle key>-<n>`` in the ``qflow`` namespace.
ACTOR_PREFIX = "qflow-warm-"


def bundle_key(bundle: Mapping[str, float]) -> str:
    """A short stable key for a resource bundle: actors are reused within a key."""
    text = repr(sorted((k, float(v)) for k, v in bundle.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class LoopPool:
    """The registry actor: which loop holds which actor, and which actors are idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[str, float]]] = {}  # key -> [(name, until)]
        self._busy: dict[str, tuple[str, str]] = {}  # loop_id -> (key, name)
        self._actors: dict[str, Any] = {}  # name -> handle (owning it keeps it alive)
        threading.Thread(
            target=self._reap_forever, daemon=True, name="qflow-loop-pool-reaper"
        ).start()

    def acquire(
        self, loop_id: str, key: str, bundle: dict[str, float], actor_cls: Any, what: str
    ) -> str:
        """The name of the actor serving ``loop_id``: its own, an idle one of ``key``, or
        a new one (its placement group waits for resources, see ``place``)."""
        with self._lock:
            if loop_id in self._busy:
                return self._busy[loop_id][1]
            idle = self._idle.get(key)
            if idle:
                name, _ = idle.pop()
                self._busy[loop_id] = (key, name)
                return name
        name = f"{ACTOR_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
        actor = place(name, bundle, actor_cls, what, on_wait=lambda: self._yield(loop_id, key))
        if isinstance(actor, str):  # an idle actor of this bundle freed up while waiting
            return actor
        with self._lock:
            self._actors[name] = actor
            self._busy[loop_id] = (key, name)
        return name

    def _yield(self, loop_id: str, key: str) -> str | None:
        """While a new actor waits for resources: take an idle actor of ``key`` if one
        appeared (returning its name), else stop idle actors of other bundles, whose
        resources may be what the wait is for."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                name, _ = idle.pop()
                self._busy[loop_id] = (key, name)
                return name
            others = [n for k, entries in self._idle.items() if k != key for n, _ in entries]
            for k in [k for k in self._idle if k != key]:
                del self._idle[k]
        for name in others:
            self._stop(name)
        return None

    def release(self, loop_id: str, keep_s: float) -> None:
        """The loop is over: keep its actor idle for ``keep_s`` seconds, or stop it now."""
        with self._lock:
            held = self._busy.pop(loop_id, None)
            if held is not None and keep_s > 0:
                key, name = held
                self._idle.setdefault(key, []).append((name, time.monotonic() + keep_s))
                return
        if held is not None:
            self._stop(held[1])

    def discard(self, loop_id: str) -> None:
        """The loop's actor died or failed: stop it and forget it."""
        with self._lock:
            held = self._busy.pop(loop_id, None)
        if held is not None:
            self._stop(held[1])

    def holder(self, loop_id: str) -> str | None:
        """The name of the actor serving ``loop_id``, if one does."""
        with self._lock:
            held = self._busy.get(loop_id)
        return None if held is None else held[1]

    def idle_names(self) -> list[str]:
        with self._lock:
            return [name for idle in self._idle.values() for name, _ in idle]

    def clear(self) -> None:
        """Stop every idle actor now."""
        with self._lock:
            names = [name for idle in self._idle.values() for name, _ in idle]
            self._idle.clear()
        for name in names:
            self._stop(name)

    def _stop(self, name: str) -> None:
        from ray.util.placement_group import get_placement_group, remove_placement_group

        actor = self._actors.pop(name, None)
        if actor is not None:
            ray.kill(actor)
        try:
            remove_placement_group(get_placement_group(f"{name}-pg"))
        except Exception:  # already gone
            pass

    def _reap_forever(self) -> None:
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._lock:
                expired = [
                    name for idle in self._idle.values() for name, until in idle if until <= now
                ]
                for key in list(self._idle):
                    self._idle[key] = [(n, u) for n, u in self._idle[key] if u > now]
            for name in expired:
                self._stop(name)


def place(
    name: str, bundle: dict[str, float], actor_cls: Any, what: str, on_wait: Any = None
) -> Any:
    """Start ``actor_cls`` as ``name`` in a STRICT_PACK placement group holding ``bundle``.

    A feasible request waits for resources to free up (other loops finishing, an
    autoscaler adding a node); it fails once no node could ever hold it, or, where an
    autoscaler's node types cannot be read, once it has not launched one in time. While
    it waits, ``on_wait()`` may return another actor's name to use instead.
    """
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from qflow.exceptions import InfeasibleResourceError
    from qflow.executors.placement import (
        autoscaler_node_types_unknown,
        ensure_feasible,
        no_longer_feasible,
    )

    try:
        ensure_feasible(bundle, what)
    except InfeasibleResourceError as exc:  # say so when a node that held it left
        lost = no_longer_feasible(bundle, what, only_if_lost=True)
        if lost is not None:
            raise InfeasibleResourceError(lost) from exc
        raise
    pg = placement_group([bundle], strategy="STRICT_PACK", name=f"{name}-pg", lifetime="detached")
    started = last_check = time.monotonic()
    while not pg.wait(timeout_seconds=0.5):
        instead = on_wait() if on_wait is not None else None
        if instead is not None:
            remove_placement_group(pg)
            return instead
        if time.monotonic() - last_check < 10:
            continue
        last_check = time.monotonic()
        waited = last_check - started
        try:
            ensure_feasible(bundle, what)
            if waited >= AUTOSCALER_WAIT_S and autoscaler_node_types_unknown():
                raise InfeasibleResourceError(
                    f"{what} asks for {bundle}; no node has held it for {waited:.0f} s and "
                    "the autoscaler has not launched one. Check that a node type in the "
                    "cluster config offers these resources."
                )
        except InfeasibleResourceError:
            remove_placement_group(pg)
            raise
    return (
        ray.remote(actor_cls)
        .options(
            name=name,
            namespace=warm.NAMESPACE,
            num_cpus=bundle.get("CPU", 1.0),
            resources={k: v for k, v in bundle.items() if k != "CPU"},
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg),
            max_concurrency=1,
        )
        .remote()
    )


#: Seconds a loop waits for an autoscaler (whose node types are unknown) to launch a
#: node for its actor before failing; cloud nodes take minutes to boot.
AUTOSCALER_WAIT_S = 900.0


#: A resource only the head node offers: the registry lives there, since a cluster
#: without its head is gone anyway, while any other node may leave.
HEAD_RESOURCE = "node:__internal_head__"
#: Seconds :func:`call_pool` keeps trying while the registry is restarted or replaced.
POOL_RETRY_S = 60.0


def pool() -> Any:
    """The registry actor, started on first use: detached, no CPU, on the head node,
    and restarted by Ray if it dies (it starts empty; loops whose actors died with it
    rerun their chunk on a new one)."""
    return warm.handle(
        POOL_NAME,
        lambda: (
            ray.remote(LoopPool)
            .options(
                name=POOL_NAME,
                namespace=warm.NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                max_concurrency=32,
                max_restarts=-1,
                resources={HEAD_RESOURCE: 0.001},
            )
            .remote()
        ),
    )


def call_pool(method: str, *args: Any) -> Any:
    """``ray.get(pool().<method>.remote(*args))``, with errors raised as their own type.

    While the registry is unavailable (restarting, or dead and being replaced), it
    tries again for up to :data:`POOL_RETRY_S` seconds, then raises ClusterError.
    """
    from qflow.exceptions import ClusterError

    deadline, pause = time.monotonic() + POOL_RETRY_S, 0.2
    while True:
        try:
            return ray.get(getattr(pool(), method).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            raise remote_cause(exc) from None
        except ray.exceptions.RayActorError as exc:  # gone or restarting: look it up again
            warm.forget(POOL_NAME)
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"qflow's loop registry actor ({POOL_NAME!r}, namespace "
                    f"{warm.NAMESPACE!r}) stayed unavailable for {POOL_RETRY_S:.0f} s: "
                    f"{type(exc).__name__}. Check the cluster's head with `ray status`."
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
