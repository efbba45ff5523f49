"""@qflow.qelectron: circuits on a backend's warm actor."""

import numpy as np
import pennylane as qml
import pytest
import ray

import qflow
from qflow.exceptions import QflowConfigError


@qflow.qelectron(backend="lightning.qubit", wires=2)
def bell_zz(theta):
    """<Z1> after RY(theta) on wire 0 and CNOT: cos(theta)."""
    qml.RY(theta, wires=0)
    qml.CNOT(wires=[0, 1])
    return qml.expval(qml.PauliZ(1))


@qflow.electron
def mean(values):
    return float(np.mean(values))


def test_outside_lattice_runs_in_process():
    """Outside a lattice the circuit runs here and keeps its name and doc."""
    assert np.isclose(bell_zz(0.0), 1.0) and np.isclose(bell_zz(np.pi), -1.0)
    assert bell_zz.__name__ == "bell_zz" and "CNOT" in bell_zz.__doc__


def test_in_lattice_runs_on_one_warm_actor():
    """Each call is a node; all run on the same actor, which keeps its device."""

    @qflow.lattice
    def flow(thetas):
        return mean([bell_zz(t) for t in thetas])

    thetas = [0.0, np.pi / 2, np.pi]
    res = qflow.dispatch_sync(flow)(thetas)
    assert res.status == "COMPLETED", res.error
    assert res.result == pytest.approx(np.mean(np.cos(thetas)), abs=1e-9)
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    assert sum(n.startswith("qflow-backend-") and n.endswith("-2") for n in names) == 1


def test_needs_wires():
    """A missing wire count is a clear error."""
    with pytest.raises(QflowConfigError, match="qelectron needs wires=<int >= 1>"):
        qflow.qelectron(backend="default.qubit")(lambda: None)


def test_braket_local_simulator_directly():
    """Braket's LocalSimulator runs a Braket circuit directly, inside a dispatch."""
    from braket.circuits import Circuit

    from qflow.backends.braket import run_local_simulator

    @qflow.electron
    def bell_counts(shots):
        return run_local_simulator(Circuit().h(0).cnot(0, 1), shots=shots)["counts"]

    @qflow.lattice
    def flow(shots):
        return bell_counts(shots)

    counts = qflow.dispatch_sync(flow)(200).result
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 200


def test_scipy_optimizer_in_packed_loop():
    """A SciPy method drives the packed loop."""
    from qflow.variational import ScipyOptimizer, minimize

    def circuit(p):
        qml.RX(p[0], wires=0)
        return qml.expval(qml.PauliZ(0))

    res = minimize(
        circuit,
        [0.4],
        wires=1,
        backend="default.qubit",
        optimizer=ScipyOptimizer("COBYLA"),
        steps=40,
        pack=20,
    )
    assert res.final_cost < -0.99
