"""A simulated remote QPU: any backend plus a network round trip and a queue delay.

It measures the value of co-location honestly on one machine: a circuit batch
pays ``round_trip_ms`` unless it runs on the Ray node that holds the QPU's
resource, as a gateway beside a real QPU would.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from qflow.backends.base import Backend
from qflow.exceptions import QflowConfigError

SIMULATED_QPU_RESOURCE = "qpu:simulated"


@functools.lru_cache(maxsize=8)
def _node_holds(resource: str, node_id: str) -> bool:
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return resource in node.get("Resources", {})
    return False


def on_node_with(resource: str) -> bool:
    """Whether this process runs on a Ray node that advertises ``resource``."""
    import ray

    if not ray.is_initialized():
        return False
    return _node_holds(resource, ray.get_runtime_context().get_node_id())


class SimulatedQPUBackend(Backend):
    """Wraps ``inner`` and delays each circuit batch like a remote QPU would.

    Args:
        inner: the backend that computes the results (name or Backend).
        round_trip_ms: network round trip paid by callers off the QPU's node.
        queue_ms: queue delay paid by every batch.
        resource: the Ray resource of the QPU's gateway node.

    Example:
        >>> from qflow.backends import get_backend
        >>> qpu = get_backend("simulated.qpu", inner="default.qubit", round_trip_ms=10)
        >>> qpu.round_trip_ms
        10.0
    """

    shots: int | None
    seed: int | None

    name = "simulated.qpu"

    def __init__(
        self,
        inner: str | Backend = "lightning.qubit",
        *,
        round_trip_ms: float = 50.0,
        queue_ms: float = 0.0,
        resource: str = SIMULATED_QPU_RESOURCE,
        **kwargs: Any,
    ) -> None:
        from qflow.backends.registry import get_backend

        noise = kwargs.pop("noise", None)  # the inner backend's: it is what simulates
        super().__init__(**kwargs)
        bad = {
            k: v
            for k, v in {"round_trip_ms": round_trip_ms, "queue_ms": queue_ms}.items()
            if not isinstance(v, int | float) or v < 0
        }
        if bad:
            raise QflowConfigError(f"Latencies must be numbers >= 0 (ms); got {bad}.")
        if isinstance(inner, Backend) and self.shots is not None and inner.shots != self.shots:
            raise QflowConfigError(
                f"shots={self.shots} given to simulated.qpu, but its inner backend {inner!r} "
                "has other shots. Set shots on one of them."
            )
        # The shots given here are the inner backend's: it is what samples.
        if isinstance(inner, Backend) and noise is not None:
            raise QflowConfigError(
                f"noise= given to simulated.qpu with a Backend object "
                f"{inner!r}; set noise on that backend instead."
            )
        extra = {} if noise is None else {"noise": noise}
        self.inner = (
            get_backend(inner, shots=self.shots, seed=self.seed, **extra)
            if isinstance(inner, str)
            else inner
        )
        self.shots, self.seed, self.noise = self.inner.shots, self.inner.seed, self.inner.noise
        self.round_trip_ms = float(round_trip_ms)
        self.queue_ms = float(queue_ms)
        self.resource = resource
        self.diff_method = self.inner.diff_method
        self.shots_on_device = self.inner.shots_on_device
        self.batches = 0

    def __repr__(self) -> str:
        return (
            f"SimulatedQPUBackend(inner={self.inner!r}, round_trip_ms={self.round_trip_ms},"
            f" queue_ms={self.queue_ms}, resource={self.resource!r})"
        )

    def ray_resources(self) -> dict[str, float]:
        # A fraction, so several loops can share one gateway node.
        return {**self.resources, self.resource: 0.001}

    def delay_s(self) -> float:
        """What one batch costs in latency from where this process runs."""
        far = 0.0 if on_node_with(self.resource) else self.round_trip_ms
        return (far + self.queue_ms) / 1000.0

    def make_device(self, wires: int) -> Any:
        device = self.inner.make_device(wires)
        # Devices call their own entry points through the class (lightning's adjoint path
        # never touches an instance attribute), so the delay goes into a subclass.
        cls = type(device)
        overrides = {
            name: self._delayed(getattr(cls, name))
            for name in _BACKEND_CALLS
            if callable(getattr(cls, name, None))
        }
        device.__class__ = type(f"SimulatedQPU{cls.__name__}", (cls,), overrides)
        return device

    def _delayed(self, method: Any) -> Any:
        backend = self

        @functools.wraps(method)
        def call(device: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(_in_call, "active", False):  # one entry point calling another
                return method(device, *args, **kwargs)
            backend.batches += 1
            time.sleep(backend.delay_s())
            _in_call.active = True
            try:
                return method(device, *args, **kwargs)
            finally:
                _in_call.active = False

        return call


#: A device's ways in: each call is one circuit batch sent to the (simulated) QPU.
_BACKEND_CALLS = (
    "execute",
    "compute_derivatives",
    "execute_and_compute_derivatives",
    "compute_vjp",
    "execute_and_compute_vjp",
)
_in_call = threading.local()
