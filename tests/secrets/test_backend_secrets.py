"""A backend's ``secrets=`` reach the loop chunks that run its circuits, and no others."""

from __future__ import annotations

import os

import pennylane as qml
import pytest

from qflow.backends import get_backend
from qflow.backends.pennylane import DefaultQubitBackend
from qflow.exceptions import BackendError, QflowConfigError
from qflow.secrets import SecretKeep
from qflow.variational import minimize

TOKEN = "qpu-token-for-the-loop-0003"


class TokenQubit(DefaultQubitBackend):
    """default.qubit behind a pretend provider that wants QPU_TOKEN where it runs."""

    name = "test.token.qubit"

    def make_device(self, wires: int):
        if os.environ.get("QPU_TOKEN") != TOKEN:
            raise BackendError("QPU_TOKEN is not granted here")
        return super().make_device(wires)


def rx(p):
    qml.RX(p[0], wires=0)
    return qml.expval(qml.PauliZ(0))


def test_loop_chunks_are_granted_the_backends_secrets(qflow_home):
    SecretKeep.of_home(qflow_home).set("QPU_TOKEN", TOKEN)
    backend = get_backend("test.token.qubit", secrets=["QPU_TOKEN"])
    assert backend.secrets == ("QPU_TOKEN",)
    res = minimize(rx, [0.3], wires=1, backend=backend, steps=6, pack=3)
    assert (
        res.iterations == 6 and res.final_cost < 0.9
    )  # it ran: RX(0.3) starts at cos(0.3) = 0.955


def test_without_the_declaration_the_backend_sees_nothing(qflow_home):
    SecretKeep.of_home(qflow_home).set("QPU_TOKEN", TOKEN)
    with pytest.raises(Exception, match="QPU_TOKEN is not granted here"):
        minimize(rx, [0.3], wires=1, backend=TokenQubit(), steps=2, pack=2)


def test_a_backend_asking_for_an_unset_secret_is_refused_before_running():
    backend = get_backend("default.qubit", secrets=["NEVER_SET_QPU_KEY"])
    with pytest.raises(QflowConfigError, match="qflow secret set NEVER_SET_QPU_KEY"):
        minimize(rx, [0.3], wires=1, backend=backend, steps=2, pack=2)
