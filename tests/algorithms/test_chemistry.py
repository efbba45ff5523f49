"""Molecules, Hamiltonians and exact energies, checked against PySCF's own full CI.

No Ray here: these build Hamiltonians and diagonalise them in-process.
"""

import numpy as np
import pennylane as qml
import pytest

from qflow.algorithms.chemistry import Molecule, exact_ground_energy, molecular_hamiltonian
from qflow.algorithms.vqe import build_circuit
from qflow.exceptions import QflowInputError

H3 = [0, 0, 0, 0, 0, 0.9, 0, 0.8, 0.45]  # Å, a triangle


def _pyscf_fci(symbols, coords_angstrom, basis="sto-3g", charge=0, spin=0):
    """The independent reference: PySCF's (RO)HF then full CI, not via qflow."""
    from pyscf import fci, gto, scf

    atoms = [(s, coords_angstrom[3 * i : 3 * i + 3]) for i, s in enumerate(symbols)]
    mol = gto.M(atom=atoms, basis=basis, charge=charge, spin=spin, unit="Angstrom", verbose=0)
    hf = (scf.ROHF(mol) if spin else scf.RHF(mol)).run()
    return fci.FCI(hf).kernel()[0]


def test_open_shell_h3_doublet_matches_full_ci():
    """Neutral H3 (a doublet, which PennyLane's own path refuses) matches PySCF FCI."""
    h3 = Molecule(["H"] * 3, H3, mult=2)
    hamiltonian, wires = molecular_hamiltonian(h3)
    energy = exact_ground_energy(hamiltonian, wires, electrons=h3.electrons, mult=2)
    assert wires == 6
    assert energy == pytest.approx(_pyscf_fci(["H"] * 3, H3, spin=1), abs=1e-7)


def test_basis_and_ion_match_full_ci():
    """H2 in 6-31G and H3+ in STO-3G match PySCF FCI (the dhf path)."""
    h2 = Molecule.h2(basis="6-31G")
    hamiltonian, wires = molecular_hamiltonian(h2)
    assert wires == 8
    assert exact_ground_energy(hamiltonian, wires, 2, mult=1) == pytest.approx(
        _pyscf_fci(["H", "H"], [0, 0, -0.3707, 0, 0, 0.3707], basis="6-31g"), abs=1e-6
    )
    h3p = Molecule(["H"] * 3, H3, charge=1)
    hamiltonian, wires = molecular_hamiltonian(h3p)
    assert exact_ground_energy(hamiltonian, wires, h3p.electrons, mult=1) == pytest.approx(
        _pyscf_fci(["H"] * 3, H3, charge=1), abs=1e-6
    )


def test_active_space_agrees_between_dhf_and_pyscf():
    """LiH with 2 active electrons in 3 orbitals: 6 qubits, the same energy both ways."""
    kwargs = dict(active_electrons=2, active_orbitals=3)
    dhf = Molecule(["Li", "H"], [0, 0, 0, 0, 0, 1.6], **kwargs)
    pyscf = Molecule(["Li", "H"], [0, 0, 0, 0, 0, 1.6], basis="sto3g", **kwargs)  # PySCF's name
    energies = []
    for molecule in (dhf, pyscf):
        hamiltonian, wires = molecular_hamiltonian(molecule)
        assert wires == 6 and molecule.qubit_electrons == 2
        energies.append(exact_ground_energy(hamiltonian, wires, 2, mult=1))
    assert energies[0] == pytest.approx(energies[1], abs=1e-6)


def test_multiplicity_sector():
    """Stretched H2: the singlet is the ground state, the triplet lies above it, and no
    sector restriction finds the singlet too."""
    hamiltonian, wires = molecular_hamiltonian(Molecule.h2(2.5))
    singlet = exact_ground_energy(hamiltonian, wires, 2, mult=1)
    triplet = exact_ground_energy(hamiltonian, wires, 2, mult=3)
    assert singlet < triplet
    assert exact_ground_energy(hamiltonian, wires, 2) == pytest.approx(singlet)
    with pytest.raises(QflowInputError, match="needs electrons"):
        exact_ground_energy(hamiltonian, wires, mult=1)


def test_mappings_keep_the_spectrum():
    """Parity and Bravyi-Kitaev Hamiltonians have the Jordan-Wigner ground energy."""
    energies = {
        m: exact_ground_energy(*molecular_hamiltonian(Molecule.h2(), mapping=m))
        for m in ("jordan_wigner", "parity", "bravyi_kitaev")
    }
    assert max(energies.values()) - min(energies.values()) < 1e-9
    with pytest.raises(QflowInputError, match="mapping is one of"):
        molecular_hamiltonian(Molecule.h2(), mapping="jw")


@pytest.mark.slow
def test_singles_matter_on_lih():
    """LiH STO-3G: doubles alone stop about 0.4 mHa short; the default ansatz with
    singles reaches the exact energy (optimised in-process with BFGS)."""
    from scipy.optimize import minimize

    lih = Molecule(["Li", "H"], [0, 0, 0, 0, 0, 1.6])
    hamiltonian, wires = molecular_hamiltonian(lih)
    exact = exact_ground_energy(hamiltonian, wires, lih.electrons, mult=1)
    gaps = {}
    for ansatz in ("double_excitation", "singles_doubles"):
        circuit, n = build_circuit(ansatz, hamiltonian, wires, lih.electrons)
        qnode = qml.QNode(
            circuit, qml.device("lightning.qubit", wires=wires), diff_method="adjoint"
        )

        def grad(x, qnode=qnode):
            return np.asarray(qml.jacobian(qnode)(qml.numpy.array(x, requires_grad=True)))

        best = minimize(
            lambda x, qnode=qnode: float(qnode(x)), np.zeros(n), jac=grad, method="BFGS"
        )
        gaps[ansatz] = (best.fun - exact) * 1000
    assert gaps["double_excitation"] > 0.3
    assert gaps["singles_doubles"] < 0.05


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(symbols=["H", "H"], mult=2), "cannot have multiplicity 2"),
        (dict(symbols=["H", "H", "H"], mult=1), "cannot have multiplicity 1"),
        (dict(symbols=["H", "Xx"]), "Unknown element symbols"),
        (dict(symbols=["H", "H"], active_electrons=3), "exceeds the molecule's 2"),
        (dict(symbols=["H", "H"], mult=0), "mult must be an int >= 1"),
        (dict(symbols="HH"), "list of element symbols"),
    ],
)
def test_molecule_refuses_bad_input(kwargs, message):
    symbols = kwargs.pop("symbols")
    geometry = [0.0] * (3 * len(symbols)) if not isinstance(symbols, str) else [0.0] * 6
    with pytest.raises(QflowInputError, match=message):
        Molecule(symbols, geometry, **kwargs)


def test_molecule_to_dict_round_trips():
    """to_dict holds every field the constructor takes."""
    lih = Molecule(
        ["Li", "H"], [0, 0, 0, 0, 0, 1.6], basis="6-31G", active_electrons=2, active_orbitals=3
    )
    data = lih.to_dict()
    assert Molecule(data.pop("symbols"), data.pop("geometry"), **data) == lih
