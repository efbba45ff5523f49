"""Quantum backends: where circuits run. Pick one by name with :func:`get_backend`.

Built in: ``default.qubit``, ``lightning.qubit``, ``default.mixed`` (noisy),
``braket.local.qubit``, ``braket.local.dm`` (noisy), ``braket.aws.qubit`` and
``simulated.qpu``.
"""

from __future__ import annotations

from qflow.backends.base import Backend
from qflow.backends.braket import BraketAwsBackend, BraketLocalBackend, BraketLocalDMBackend
from qflow.backends.pennylane import DefaultMixedBackend, DefaultQubitBackend, LightningQubitBackend
from qflow.backends.registry import ENTRY_POINT_GROUP, get_backend
from qflow.backends.simulated import SimulatedQPUBackend

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BraketAwsBackend",
    "BraketLocalBackend",
    "BraketLocalDMBackend",
    "DefaultMixedBackend",
    "DefaultQubitBackend",
    "LightningQubitBackend",
    "SimulatedQPUBackend",
    "get_backend",
]
