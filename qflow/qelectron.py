"""``@qflow.qelectron``: an electron whose circuits run on a backend's warm actor.

The decorated function builds a circuit (a QNode body: gates, then measurements).
Inside a lattice each call is a node whose circuit runs on one long-lived Ray
actor per (backend, wires): the device is built there once, on the node holding
the backend's resource, and kept warm across calls and dispatches. Outside a
lattice the call runs the circuit in-process on the same backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np

from qflow.core.graph import current_graph
from qflow.core.options import ElectronOptions
from qflow.core.task import PickledFunction
from qflow.electron import Electron
from qflow.exceptions import QflowConfigError
from qflow.loops import warm as warm

__all__ = ["QElectron", "qelectron"]


class _BackendActor:
    """Holds one warm device and the QNodes built on it."""

    def __init__(self, backend_blob: bytes, wires: int) -> None:
        self.backend = cloudpickle.loads(backend_blob)
        self.device = self.backend.make_device(wires)
        self.qnodes: dict[str, Any] = {}

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(self, fn: PickledFunction, args: tuple, kwargs: dict) -> Any:

        qnode = self.qnodes.get(fn.digest)
        if qnode is None:
            qnode = self.qnodes[fn.digest] = self.backend.qnode(fn.load(), self.device)
        return _plain(qnode(*args, **kwargs))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    return np.asarray(value) if hasattr(value, "shape") else value


def _actor_name(backend_blob: bytes, wires: int) -> str:
    return f"qflow-backend-{hashlib.sha1(backend_blob).hexdigest()[:12]}-{wires}"


def run_on_actor(backend: Any, wires: int, fn: PickledFunction, args: tuple, kwargs: dict) -> Any:
    """Run a circuit on the warm actor for (backend, wires), started on first use on
    the backend's node; a dead one is replaced once."""
    import ray

    blob = cloudpickle.dumps(backend)
    name = _actor_name(blob, wires)

    def start() -> Any:
        # Not detached: it lives while a process holds its handle (the cache does).
        return (
            ray.remote(_BackendActor)
            .options(
                name=name,
                namespace=warm.NAMESPACE,
                get_if_exists=True,
                num_cpus=1,
                resources=backend.ray_resources() or None,
                max_concurrency=1,
            )
            .remote(blob, wires)
        )

    return warm.call(name, start, lambda actor: actor.run.remote(fn, args, kwargs))


class QElectron(Electron):
    """An electron whose circuit runs on a backend. Made by :func:`qelectron`."""

    def __init__(
        self, fn: Callable[..., Any], backend: Any, wires: int, options: ElectronOptions
    ) -> None:
        self.circuit = fn
        self.backend = backend
        self.wires = wires
        pickled = PickledFunction(fn)

        def run_on_backend(*args: Any, **kwargs: Any) -> Any:
            return run_on_actor(backend, wires, pickled, args, kwargs)

        run_on_backend.__name__ = fn.__name__
        run_on_backend.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
        run_on_backend.__doc__ = fn.__doc__
        super().__init__(run_on_backend, options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current_graph() is not None:
            return super().__call__(*args, **kwargs)

        qnode = self.backend.qnode(self.circuit, self.backend.make_device(self.wires))
        return _plain(qnode(*args, **kwargs))


def qelectron(
    _func: Callable[..., Any] | None = None,
    *,
    backend: Any = "default.qubit",
    wires: int | None = None,
    **options: Any,
) -> Any:
    """Make a circuit-building function an electron that runs on ``backend``.

    Args:
        backend: a backend name or :class:`qflow.backends.Backend`.
        wires: the device's wire count (required).
        **options: electron options (see :func:`qflow.electron`); the task that
            calls the actor needs no CPU of its own, so ``num_cpus`` defaults to 0.

    Example:
        >>> import pennylane as qml, qflow
        >>> @qflow.qelectron(backend="default.qubit", wires=1)
        ... def flip(theta):
        ...     qml.RX(theta, wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> round(float(flip(0.0)), 3)   # outside a lattice: runs in-process
        1.0
    """
    from qflow.backends import get_backend

    if not isinstance(wires, int) or wires < 1:
        raise QflowConfigError(
            f"qelectron needs wires=<int >= 1> for its device; got {wires!r}. "
            "Example: @qflow.qelectron(backend='lightning.qubit', wires=4)."
        )
    resolved = get_backend(backend)
    options.setdefault("num_cpus", 0)
    opts = ElectronOptions.from_kwargs(**options)
    if _func is None:
        return lambda fn: QElectron(fn, resolved, wires, opts)
    return QElectron(_func, resolved, wires, opts)
