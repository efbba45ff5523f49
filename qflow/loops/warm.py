"""Warm actors: long-lived, named Ray actors that keep a device (and its compiled
state) between calls, shared by ``qelectron`` and the packed variational loops.

A handle is looked up once per process (cached), found by name if another process
started the actor, and started otherwise. A call that finds the actor dead gets
one fresh actor and one retry; an error raised by the user's code inside the actor
comes back as the user's own exception (see :func:`qflow.core.tracebacks.remote_cause`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

from qflow.core.tracebacks import remote_cause

NAMESPACE = "qflow"

#: Handles this process already looked up or started, by actor name.
_handles: dict[str, Any] = {}


def handle(name: str, start: Callable[[], Any]) -> Any:
    """The actor called ``name``: cached, else found by name, else ``start()``-ed."""
    actor = _handles.get(name)
    if actor is None:
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            actor = start()
        _handles[name] = actor
    return actor


def forget(name: str) -> None:
    """Drop the cached handle (the actor is dead, or about to be)."""
    _handles.pop(name, None)


def call(
    name: str,
    start: Callable[[], Any],
    invoke: Callable[[Any], Any],
    on_death: Callable[[], None] | None = None,
) -> Any:
    """``ray.get(invoke(actor))`` on the warm actor ``name``.

    Args:
        name: the actor's name in the ``qflow`` namespace.
        start: starts the actor when none runs.
        invoke: makes the call on a handle and returns its ObjectRef.
        on_death: runs when the actor was found dead, before the one retry (to clean
            up what belongs to it, or to adjust what ``invoke`` sends).

    Raises:
        The user's own exception when their code raised inside the actor;
        ``RayActorError`` when a fresh actor died as well.
    """
    for attempt in range(2):
        try:  # an actor dying while it starts counts as a death too
            return ray.get(invoke(handle(name, start)))
        except ray.exceptions.RayActorError:
            forget(name)
            if attempt:
                raise
            if on_death is not None:
                on_death()
        except ray.exceptions.RayTaskError as exc:
            raise remote_cause(exc) from None
    raise AssertionError("unreachable")
