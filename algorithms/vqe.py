"""VQE: ground-state energies of molecules on any backend, as packed variational loops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.variational import LoopResult, minimize

__all__ = ["Molecule", "VQEResult", "build_circuit", "exact_ground_energy",
           "molecular_hamiltonian", "vqe"]

ANSATZE = ("double_excitation", "singles_doubles", "uccsd")
#: Length units a geometry may be given in.
UNITS = ("angstrom", "bohr")
#: Bohr per Ångström (CODATA 2018).
BOHR_PER_ANGSTROM = 1.8897261246


def check_unit(unit: Any) -> str:
    """``unit`` lower-cased, or a QflowInputError listing the valid ones."""
    if not isinstance(unit, str) or unit.lower() not in UNITS:
        raise QflowInputError(f"unit is one of {', '.join(UNITS)} (lengths in Ångström or "
                              f"Bohr); got {unit!r}.")
    return unit.lower()


@dataclass(frozen=True)
class Molecule:
    """Atoms and their coordinates, in Ångström by default (as PennyLane's qchem).

    Example:
        >>> Molecule(["H", "H"], [0, 0, 0, 0, 0, 0.7414]).unit
        'angstrom'
        >>> Molecule.h2(1.4011, unit="bohr").bond_length_angstrom()
        0.7414...
    """

    symbols: tuple[str, ...]
    geometry: tuple[float, ...]
    charge: int = 0
    unit: str = "angstrom"

    def __init__(self, symbols: Sequence[str], geometry: Sequence[float], charge: int = 0,
                 unit: str = "angstrom"):
        geometry = tuple(float(x) for x in np.ravel(geometry))
        if len(geometry) != 3 * len(symbols) or not symbols:
            raise QflowInputError(
                f"A molecule needs 3 coordinates per atom: got {len(symbols)} symbols "
                f"{list(symbols)} and {len(geometry)} coordinates.")
        object.__setattr__(self, "symbols", tuple(symbols))
        object.__setattr__(self, "geometry", geometry)
        object.__setattr__(self, "charge", charge)
        object.__setattr__(self, "unit", check_unit(unit))

    @classmethod
    def h2(cls, bond_length: float = 0.7414, unit: str = "angstrom") -> Molecule:
        """H2 along z with ``bond_length`` in ``unit`` (0.7414 Å is its equilibrium)."""
        return cls(["H", "H"], [0, 0, -bond_length / 2, 0, 0, bond_length / 2], unit=unit)

    @property
    def geometry_bohr(self) -> np.ndarray:
        """The coordinates in Bohr, shape (atoms, 3), as qchem's Hamiltonian wants them."""
        scale = BOHR_PER_ANGSTROM if self.unit == "angstrom" else 1.0
        return np.array(self.geometry).reshape(-1, 3) * scale

    def bond_length_angstrom(self) -> float:
        """The distance between the first two atoms, in Ångström."""
        a, b = self.geometry_bohr[:2]
        return float(np.linalg.norm(a - b) / BOHR_PER_ANGSTROM)

    @property
    def electrons(self) -> int:
        from pennylane.qchem import Molecule as PLMolecule

        return PLMolecule(list(self.symbols), np.array(self.geometry).reshape(-1, 3),
                          charge=self.charge).n_electrons


def molecular_hamiltonian(molecule: Molecule) -> tuple[Any, int]:
    """The qubit Hamiltonian and its wire count, from PennyLane's offline ``dhf`` method."""
    import pennylane as qml

    return qml.qchem.molecular_hamiltonian(list(molecule.symbols), molecule.geometry_bohr,
                                           charge=molecule.charge, method="dhf")


def exact_ground_energy(hamiltonian: Any, wires: int, electrons: int | None = None) -> float:
    """The lowest eigenvalue of a qubit Hamiltonian, in the sector of ``electrons``.

    With ``electrons`` (the molecule's electron number: ``Molecule.electrons``) only
    basis states with that many occupied spin orbitals count, under the Jordan-Wigner
    mapping qchem uses. Without it the lowest eigenvalue over every electron number is
    returned, which for an ion is another species' energy (H3+ would give neutral H3).
    A sparse eigensolver keeps 20 qubits within reach.

    Example:
        >>> import pennylane as qml
        >>> h = qml.Hamiltonian([1.0, -1.0], [qml.Z(0), qml.Z(1)])  # |01> is lowest
        >>> exact_ground_energy(h, 2), exact_ground_energy(h, 2, electrons=2)
        (-2.0, 0.0)
    """
    from scipy.sparse.linalg import eigsh

    matrix = hamiltonian.sparse_matrix(wire_order=range(wires)).tocsr()
    if electrons is not None:
        if not isinstance(electrons, int) or not 0 <= electrons <= wires:
            raise QflowInputError(f"electrons must be an int from 0 to {wires} (the spin "
                                  f"orbitals); got {electrons!r}.")
        index = np.arange(2 ** wires)
        occupied = np.zeros(2 ** wires, dtype=np.int64)
        for bit in range(wires):
            occupied += (index >> bit) & 1
        sector = np.flatnonzero(occupied == electrons)
        matrix = matrix[sector][:, sector]
    if matrix.shape[0] <= 512:
        return float(np.linalg.eigvalsh(matrix.toarray())[0])
    return float(eigsh(matrix, k=1, which="SA", return_eigenvectors=False)[0])


@dataclass(frozen=True)
class VQEResult:
    """Energies per iteration, the final energy and params, timings and the dispatch id."""

    energies: list[float]
    energy: float
    params: np.ndarray
    iterations: int
    seconds: float
    dispatch_id: str
    loop: LoopResult


def build_circuit(ansatz: str, hamiltonian: Any, wires: int, electrons: int) -> tuple[Any, int]:
    """The ansatz circuit (a QNode body returning ``expval(hamiltonian)``) and its param count."""
    import pennylane as qml

    if ansatz not in ANSATZE:
        raise QflowConfigError(f"Unknown ansatz {ansatz!r}. Valid ansatze are: {', '.join(ANSATZE)}.")
    hf = qml.qchem.hf_state(electrons, wires)
    singles, doubles = qml.qchem.excitations(electrons, wires)
    if ansatz == "double_excitation":
        def circuit(params: Any) -> Any:
            qml.BasisState(hf, wires=range(wires))
            for theta, d in zip(params, doubles):
                qml.DoubleExcitation(theta, wires=d)
            return qml.expval(hamiltonian)
        return circuit, len(doubles)
    if ansatz == "singles_doubles":
        def circuit(params: Any) -> Any:
            qml.AllSinglesDoubles(params, wires=range(wires), hf_state=hf, singles=singles,
                                  doubles=doubles)
            return qml.expval(hamiltonian)
        return circuit, len(singles) + len(doubles)
    s_wires, d_wires = qml.qchem.excitations_to_wires(singles, doubles)

    def circuit(params: Any) -> Any:
        qml.UCCSD(params, wires=range(wires), s_wires=s_wires, d_wires=d_wires, init_state=hf)
        return qml.expval(hamiltonian)
    return circuit, len(singles) + len(doubles)


def vqe(molecule: Molecule | None = None, *, hamiltonian: Any = None, wires: int | None = None,
        electrons: int | None = None, ansatz: str = "double_excitation", optimizer: Any = None,
        backend: Any = "lightning.qubit", steps: int = 100, pack: int = 10,
        tol: float | None = 1e-8, initial_params: Sequence[float] | None = None,
        diff_method: str | None = None) -> VQEResult:
    """Find a ground-state energy with VQE on a backend, packed ``pack`` steps per actor call.

    Args:
        molecule: the molecule; or give ``hamiltonian``, ``wires`` and ``electrons``.
        ansatz: ``"double_excitation"`` (default: double excitations on Hartree-Fock),
            ``"singles_doubles"`` or ``"uccsd"``.
        optimizer: a PennyLane optimizer (default gradient descent, step 0.4).
        backend, steps, pack, tol, diff_method: see :func:`qflow.variational.minimize`.

    Example:
        >>> from qflow.algorithms import Molecule, vqe
        >>> round(vqe(Molecule.h2(), steps=30).energy, 3)
        -1.137
    """
    if molecule is not None:
        if hamiltonian is not None:
            raise QflowInputError("Give a molecule or a hamiltonian, not both.")
        hamiltonian, wires = molecular_hamiltonian(molecule)
        electrons = molecule.electrons
    elif hamiltonian is None or wires is None or electrons is None:
        raise QflowInputError(
            "vqe needs a molecule, or a hamiltonian with wires= and electrons=: e.g. "
            "vqe(Molecule.h2()) or vqe(hamiltonian=H, wires=4, electrons=2).")
    circuit, n_params = build_circuit(ansatz, hamiltonian, wires, electrons)
    params = np.zeros(n_params) if initial_params is None else np.asarray(initial_params, float)
    if params.shape != (n_params,):
        raise QflowInputError(
            f"The {ansatz} ansatz for this molecule takes {n_params} params; initial_params has "
            f"shape {params.shape}.")
    loop = minimize(circuit, params, wires=wires, backend=backend, optimizer=optimizer,
                    steps=steps, pack=pack, tol=tol, diff_method=diff_method)
    return VQEResult(energies=loop.costs, energy=loop.final_cost, params=loop.params,
                     iterations=loop.iterations, seconds=loop.seconds,
                     dispatch_id=loop.dispatch_id, loop=loop)
