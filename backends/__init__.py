"""Quantum backends: where circuits run. Pick one by name with :func:`get_backend`.

Built in: ``default.qubit``, ``lightning.qubit``, ``braket.local.qubit``,
``braket.aws.qubit`` and ``simulated.qpu``.
"""

from __future__ import annotations

from typing import Any

from qflow.backends.base import Backend
from qflow.backends.braket import BraketAwsBackend, BraketLocalBackend
from qflow.backends.pennylane import DefaultQubitBackend, LightningQubitBackend
from qflow.backends.simulated import SimulatedQPUBackend
from qflow.exceptions import QflowConfigError

__all__ = [
    "Backend",
    "BraketAwsBackend",
    "BraketLocalBackend",
    "DefaultQubitBackend",
    "LightningQubitBackend",
    "SimulatedQPUBackend",
    "get_backend",
]


def get_backend(spec: str | Backend, **kwargs: Any) -> Backend:
    """A Backend for a registry name (with its options) or an existing Backend.

    Raises:
        QflowConfigError: an unknown name; the message lists the valid ones.
    """
    if isinstance(spec, Backend):
        if kwargs:
            raise QflowConfigError(
                f"Options {sorted(kwargs)} given with a Backend object {spec!r}; set them "
                "on the object instead.")
        return spec
    cls = Backend.registry.get(spec) if isinstance(spec, str) else None
    if cls is None:
        valid = ", ".join(sorted(Backend.registry))
        raise QflowConfigError(
            f"Unknown backend {spec!r}. Valid backends are: {valid}. They need the quantum "
            "extra: pip install 'qflow-runtime[quantum]'.")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise QflowConfigError(f"Invalid options for backend {spec!r}: {exc}.") from exc
