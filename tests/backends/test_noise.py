"""Noisy simulation: default.mixed and Braket's density-matrix simulator with noise."""

import numpy as np
import pennylane as qml
import pytest

from qflow.algorithms import Molecule, vqe
from qflow.algorithms.chemistry import molecular_hamiltonian
from qflow.backends import get_backend
from qflow.exceptions import QflowConfigError


def _h2_circuit():
    hamiltonian, wires = molecular_hamiltonian(Molecule.h2())
    hf = qml.qchem.hf_state(2, wires)

    def circuit(params):
        qml.BasisState(hf, wires=range(wires))
        qml.DoubleExcitation(params[0], wires=[0, 1, 2, 3])
        return qml.expval(hamiltonian)

    return circuit


def test_both_noisy_simulators_agree():
    """Depolarising noise of the same strength gives the same energy on default.mixed and
    braket_dm (exact expectations, so equal to 1e-9), above the noiseless one."""
    circuit = _h2_circuit()
    energies = {}
    for name, noise in (
        ("default.mixed", None),
        ("default.mixed", 0.02),
        ("braket.local.dm", 0.02),
    ):
        backend = get_backend(name, noise=noise)
        energies[name, noise] = float(backend.qnode(circuit, backend.make_device(4))([0.22]))
    assert energies["default.mixed", 0.02] == pytest.approx(
        energies["braket.local.dm", 0.02], abs=1e-9
    )
    assert energies["default.mixed", 0.02] > energies["default.mixed", None] + 0.01


def test_a_noise_model_is_applied():
    """A qml.NoiseModel given as noise= acts only where its conditions say."""
    circuit = _h2_circuit()
    only_double = qml.NoiseModel(
        {qml.noise.op_eq(qml.DoubleExcitation): qml.noise.partial_wires(qml.AmplitudeDamping, 0.1)}
    )
    backend = get_backend("default.mixed", noise=only_double)
    noisy = float(backend.qnode(circuit, backend.make_device(4))([0.22]))
    clean = get_backend("default.mixed")
    assert noisy != pytest.approx(float(clean.qnode(circuit, clean.make_device(4))([0.22])))


def test_vqe_energy_rises_with_depolarising_noise():
    """Issue 11: H2's VQE energy on default.mixed rises with the noise strength, end to end
    through the packed loop."""
    energies = [
        vqe(
            Molecule.h2(),
            backend=get_backend("default.mixed", noise=p),
            ansatz="double_excitation",
            steps=15,
            pack=15,
        ).energy
        for p in (0.0, 0.005, 0.02)
    ]
    assert energies[0] == pytest.approx(-1.13727, abs=2e-3)
    assert energies[0] < energies[1] < energies[2]
    assert np.all(np.diff(energies) > 1e-3)


def test_noise_refused_where_it_cannot_apply():
    """Pure-state backends name the mixed-state ones; bad strengths say what they got."""
    with pytest.raises(
        QflowConfigError, match="simulates pure states.*braket.local.dm, default.mixed"
    ):
        get_backend("lightning.qubit", noise=0.01)
    with pytest.raises(QflowConfigError, match=r"probability in \[0, 1\]; got 1.5"):
        get_backend("default.mixed", noise=1.5)
    with pytest.raises(QflowConfigError, match="or a qml.NoiseModel; got str"):
        get_backend("braket.local.dm", noise="depolarizing")


def test_simulated_qpu_passes_noise_to_its_inner_backend():
    qpu = get_backend("simulated.qpu", inner="default.mixed", noise=0.01, round_trip_ms=0)
    assert qpu.noise == 0.01 and qpu.inner.noise == 0.01
    assert qpu.describe()["noise"] == 0.01
