"""Amazon Braket: the offline LocalSimulator, and managed devices by ARN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qflow.backends.base import Backend
from qflow.exceptions import BackendError, QflowConfigError

#: The Ray resource a gateway node in the Braket region advertises (see ray-cluster.yaml).
BRAKET_GATEWAY_RESOURCE = "qpu:braket-us-east-1"


class BraketLocalBackend(Backend):
    """Braket's LocalSimulator through the PennyLane plugin; needs no AWS account."""

    name = "braket.local.qubit"
    diff_method = "parameter-shift"
    shots_on_device = True
    seedable = False

    def make_device(self, wires: int) -> Any:
        import pennylane as qml

        return qml.device("braket.local.qubit", wires=wires, shots=self.shots or 0)


class BraketLocalDMBackend(BraketLocalBackend):
    """Braket's local density-matrix simulator (``braket_dm``), for noisy runs offline.

    Example:
        >>> from qflow.backends import get_backend
        >>> get_backend("braket.local.dm", noise=0.02).noise
        0.02
    """

    name = "braket.local.dm"
    supports_noise = True

    def make_device(self, wires: int) -> Any:
        import pennylane as qml

        return qml.device(
            "braket.local.qubit", backend="braket_dm", wires=wires, shots=self.shots or 0
        )


def run_local_simulator(circuit: Any, shots: int = 0) -> dict[str, Any]:
    """Run a ``braket.circuits.Circuit`` on Braket's LocalSimulator directly (no PennyLane).

    Returns ``{"counts": {...}}`` with shots, else ``{"values": [...]}`` for the
    circuit's result types.

    Example:
        >>> from braket.circuits import Circuit
        >>> round(run_local_simulator(Circuit().h(0).cnot(0, 1).probability())["values"][0][0], 6)
        0.5
    """
    from braket.devices import LocalSimulator

    try:
        result = LocalSimulator().run(circuit, shots=shots).result()
    except Exception as exc:  # Braket's validation errors: translate at the boundary
        raise BackendError(f"Braket LocalSimulator rejected the circuit: {exc}") from exc
    if shots:
        return {"counts": dict(result.measurement_counts)}
    return {"values": [np.asarray(v).tolist() for v in result.values]}


def aws_credentials_available() -> bool:
    """Whether boto3 finds AWS credentials here (never reads or stores them itself)."""
    try:
        import boto3
    except ImportError:
        return False
    return boto3.Session().get_credentials() is not None


class BraketAwsBackend(Backend):
    """A managed Braket device (simulator or QPU) by ARN, through ``braket.aws.qubit``.

    Credentials come from the standard AWS chain where the actor runs; qflow never
    writes them to the store, logs or results.

    Args:
        device_arn: e.g. ``"arn:aws:braket:::device/quantum-simulator/amazon/sv1"``.
        s3_destination: optional ``(bucket, prefix)`` for task results.
    """

    name = "braket.aws.qubit"
    diff_method = "parameter-shift"
    shots_on_device = True
    seedable = False

    def __init__(
        self,
        device_arn: str = "",
        *,
        s3_destination: tuple[str, str] | None = None,
        shots: int | None = 100,
        resources: dict[str, float] | None = None,
        secrets: Sequence[str] | str = (),
    ) -> None:
        if not isinstance(device_arn, str) or not device_arn.startswith("arn:aws:braket"):
            raise QflowConfigError(
                f"braket.aws.qubit needs device_arn='arn:aws:braket:...'; got {device_arn!r}. "
                "Find ARNs in the Braket console, e.g. "
                "arn:aws:braket:::device/quantum-simulator/amazon/sv1."
            )
        super().__init__(
            shots=shots, resources=resources or {BRAKET_GATEWAY_RESOURCE: 1}, secrets=secrets
        )
        self.device_arn = device_arn
        self.s3_destination = s3_destination

    def __repr__(self) -> str:
        return f"BraketAwsBackend(device_arn={self.device_arn!r}, shots={self.shots!r})"

    def make_device(self, wires: int) -> Any:
        if not aws_credentials_available():
            raise BackendError(
                f"braket.aws.qubit ({self.device_arn}) needs AWS credentials where it runs, and "
                "none were found. Configure them (aws configure, AWS_PROFILE, or an instance "
                "role on the qpu-gateway node), or use 'braket.local.qubit' offline."
            )
        import pennylane as qml

        kwargs: dict[str, Any] = {
            "device_arn": self.device_arn,
            "wires": wires,
            "shots": self.shots,
        }
        if self.s3_destination:
            kwargs["s3_destination_folder"] = self.s3_destination
        try:
            return qml.device("braket.aws.qubit", **kwargs)
        except Exception as exc:  # boto/Braket errors: translate at the boundary
            raise BackendError(f"Could not open Braket device {self.device_arn}: {exc}") from exc
