"""PennyLane's own simulators."""

from __future__ import annotations

import os
from typing import Any

from qflow.backends.base import Backend


class DefaultQubitBackend(Backend):
    """PennyLane's ``default.qubit`` (autograd-friendly reference simulator).

    Example:
        >>> from qflow.backends import get_backend
        >>> get_backend("default.qubit").make_device(2).name
        'default.qubit'
    """

    name = "default.qubit"

    def make_device(self, wires: int) -> Any:
        import pennylane as qml

        return qml.device("default.qubit", wires=wires, seed=self.seed)  # shots: on the QNode


class LightningQubitBackend(Backend):
    """``lightning.qubit``, the C++ state-vector simulator, with adjoint gradients.

    Args:
        omp_threads: OpenMP threads for lightning. Default 1: one actor per core
            beats oversubscribed threads on small circuits.
    """

    name = "lightning.qubit"
    diff_method = "adjoint"

    def __init__(self, *, omp_threads: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.omp_threads = omp_threads

    def make_device(self, wires: int) -> Any:
        import pennylane as qml

        os.environ["OMP_NUM_THREADS"] = str(self.omp_threads)
        return qml.device("lightning.qubit", wires=wires, seed=self.seed)  # shots: QNode


class DefaultMixedBackend(Backend):
    """PennyLane's ``default.mixed`` density-matrix simulator, for noisy runs.

    Example:
        >>> from qflow.backends import get_backend
        >>> get_backend("default.mixed", noise=0.01).noise
        0.01
    """

    name = "default.mixed"
    # Its backprop path breaks under autograd on channels; parameter shift is exact here.
    diff_method = "parameter-shift"
    supports_noise = True

    def make_device(self, wires: int) -> Any:
        import pennylane as qml

        return qml.device("default.mixed", wires=wires, seed=self.seed)  # shots: QNode
