"""Molecules, their qubit Hamiltonians and exact reference energies.

Closed-shell molecules in the bases PennyLane's differentiable Hartree-Fock knows are
built offline with its ``dhf`` method; open shells (``mult`` above 1) and other bases
go through PySCF (restricted open-shell Hartree-Fock), the ``chem`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qflow.exceptions import QflowConfigError, QflowInputError

__all__ = ["MAPPINGS", "Molecule", "exact_ground_energy", "molecular_hamiltonian"]

#: Length units a geometry may be given in.
UNITS = ("angstrom", "bohr")
#: Bohr per Ångström (CODATA 2018).
BOHR_PER_ANGSTROM = 1.8897261246
#: Fermion-to-qubit mappings PennyLane's qchem offers.
MAPPINGS = ("jordan_wigner", "parity", "bravyi_kitaev")
#: Bases PennyLane's built-in (``dhf``) Hartree-Fock has data for; others need PySCF.
DHF_BASES = ("sto-3g", "6-31g", "6-311g", "cc-pvdz")
_SYMBOLS = [
    "H",
    "He",
    "Li",
    "Be",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Ne",
    "Na",
    "Mg",
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "Ar",
    "K",
    "Ca",
    "Sc",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Ga",
    "Ge",
    "As",
    "Se",
    "Br",
    "Kr",
]
#: Atomic numbers, H to Kr (what STO-3G covers).
_Z = {symbol: z for z, symbol in enumerate(_SYMBOLS, start=1)}


def check_unit(unit: Any) -> str:
    """``unit`` lower-cased, or a QflowInputError listing the valid ones."""
    if not isinstance(unit, str) or unit.lower() not in UNITS:
        raise QflowInputError(
            f"unit is one of {', '.join(UNITS)} (lengths in Ångström or Bohr); got {unit!r}."
        )
    return unit.lower()


def check_mapping(mapping: Any) -> str:
    """``mapping`` if PennyLane's qchem offers it, else a QflowInputError listing them."""
    if mapping not in MAPPINGS:
        raise QflowInputError(f"mapping is one of {', '.join(MAPPINGS)}; got {mapping!r}.")
    return mapping


def _positive_int(name: str, value: Any, low: int = 1) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise QflowInputError(f"{name} must be an int >= {low} or None; got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class Molecule:
    """Atoms, their coordinates and the electronic problem to solve.

    Coordinates are in Ångström by default (as PennyLane's qchem); pass
    ``unit="bohr"`` for atomic units.

    Args:
        symbols: element symbols, e.g. ``["Li", "H"]``.
        geometry: 3 coordinates per atom, flat or shaped (atoms, 3).
        charge: net charge.
        mult: spin multiplicity 2S+1 (1 singlet, 2 doublet, ...). Above 1 needs PySCF.
        basis: Gaussian basis set, e.g. ``"sto-3g"`` (default) or ``"6-31g"``.
        unit: ``"angstrom"`` or ``"bohr"``.
        active_electrons, active_orbitals: an active space; the other occupied
            orbitals are frozen as core. ``None`` keeps every electron and orbital.

    Example:
        >>> Molecule(["H", "H"], [0, 0, 0, 0, 0, 0.7414]).unit
        'angstrom'
        >>> Molecule.h2(1.4011, unit="bohr").bond_length_angstrom()
        0.7414...
        >>> Molecule(["H", "H", "H"], [0, 0, 0, 0, 0, 1, 0, 1, 0.5], mult=2).electrons
        3
    """

    symbols: tuple[str, ...]
    geometry: tuple[float, ...]
    charge: int = 0
    unit: str = "angstrom"
    mult: int = 1
    basis: str = "sto-3g"
    active_electrons: int | None = None
    active_orbitals: int | None = None

    def __init__(
        self,
        symbols: Sequence[str],
        geometry: Sequence[float],
        charge: int = 0,
        unit: str = "angstrom",
        *,
        mult: int = 1,
        basis: str = "sto-3g",
        active_electrons: int | None = None,
        active_orbitals: int | None = None,
    ):
        if isinstance(symbols, str):
            raise QflowInputError(
                f"symbols is a list of element symbols such as ['H', 'H']; "
                f"got the string {symbols!r}."
            )
        geometry = tuple(float(x) for x in np.ravel(geometry))
        if len(geometry) != 3 * len(symbols) or not symbols:
            raise QflowInputError(
                f"A molecule needs 3 coordinates per atom: got {len(symbols)} symbols "
                f"{list(symbols)} and {len(geometry)} coordinates."
            )
        unknown = sorted({s for s in symbols if s not in _Z})
        if unknown:
            raise QflowInputError(
                f"Unknown element symbols {unknown}; qflow knows H to Kr "
                f"({', '.join(_Z)}), case-sensitive."
            )
        if not isinstance(charge, int | np.integer) or isinstance(charge, bool):
            raise QflowInputError(f"charge must be an int; got {charge!r}.")
        mult = _positive_int("mult", mult)  # type: ignore[assignment]
        electrons = sum(_Z[s] for s in symbols) - int(charge)
        if electrons < 1:
            raise QflowInputError(f"charge {charge} leaves {electrons} electrons.")
        if mult - 1 > electrons or (electrons - (mult - 1)) % 2:
            raise QflowInputError(
                f"{electrons} electrons cannot have multiplicity {mult}: 2S+1 must have "
                f"{'even' if electrons % 2 else 'odd'} parity and 2S <= electrons. For "
                f"{electrons} electrons use mult={'2, 4' if electrons % 2 else '1, 3'}, ..."
            )
        if not isinstance(basis, str) or not basis:
            raise QflowInputError(f"basis is a basis-set name such as 'sto-3g'; got {basis!r}.")
        active_electrons = _positive_int("active_electrons", active_electrons)
        active_orbitals = _positive_int("active_orbitals", active_orbitals)
        if active_electrons is not None and active_electrons > electrons:
            raise QflowInputError(
                f"active_electrons={active_electrons} exceeds the molecule's {electrons} electrons."
            )
        for name, value in (
            ("symbols", tuple(symbols)),
            ("geometry", geometry),
            ("charge", int(charge)),
            ("unit", check_unit(unit)),
            ("mult", mult),
            ("basis", basis.lower()),
            ("active_electrons", active_electrons),
            ("active_orbitals", active_orbitals),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def h2(cls, bond_length: float = 0.7414, unit: str = "angstrom", **kwargs: Any) -> Molecule:
        """H2 along z with ``bond_length`` in ``unit`` (0.7414 Å is its equilibrium)."""
        return cls(["H", "H"], [0, 0, -bond_length / 2, 0, 0, bond_length / 2], unit=unit, **kwargs)

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
    def formula(self) -> str:
        """The chemical formula in the order atoms were given, e.g. ``"LiH"``, ``"H2O"``."""
        counts: dict[str, int] = {}
        for symbol in self.symbols:
            counts[symbol] = counts.get(symbol, 0) + 1
        return "".join(s + (str(n) if n > 1 else "") for s, n in counts.items())

    @property
    def electrons(self) -> int:
        """Every electron of the molecule."""
        return sum(_Z[s] for s in self.symbols) - self.charge

    @property
    def qubit_electrons(self) -> int:
        """The electrons the qubits hold: the active ones if an active space is set."""
        return self.active_electrons if self.active_electrons is not None else self.electrons

    @property
    def open_shell(self) -> bool:
        return self.mult != 1

    def to_dict(self) -> dict[str, Any]:
        """Everything that defines the problem, as JSON-ready values."""
        return {
            "symbols": list(self.symbols),
            "geometry": list(self.geometry),
            "unit": self.unit,
            "charge": self.charge,
            "mult": self.mult,
            "basis": self.basis,
            "active_electrons": self.active_electrons,
            "active_orbitals": self.active_orbitals,
        }


def molecular_hamiltonian(molecule: Molecule, mapping: str = "jordan_wigner") -> tuple[Any, int]:
    """The qubit Hamiltonian of ``molecule`` and its wire count (two per active orbital).

    Closed shells in the bases PennyLane's ``dhf`` has data for are built offline with
    it; open shells and other bases from PySCF's (restricted open-shell) Hartree-Fock
    orbitals, which needs ``pip install 'qflow-runtime[chem]'``.

    Example:
        >>> h, wires = molecular_hamiltonian(Molecule.h2())
        >>> wires
        4
    """
    import pennylane as qml

    mapping = check_mapping(mapping)
    use_dhf = not molecule.open_shell and molecule.basis in DHF_BASES
    try:
        if use_dhf:
            hamiltonian, _ = qml.qchem.molecular_hamiltonian(
                list(molecule.symbols),
                molecule.geometry_bohr,
                charge=molecule.charge,
                mult=1,
                basis=molecule.basis,
                method="dhf",
                mapping=mapping,
                active_electrons=molecule.active_electrons,
                active_orbitals=molecule.active_orbitals,
            )
            orbitals = _active_orbital_count(molecule, _dhf_orbitals(molecule))
        else:
            core, one, two, orbitals = _pyscf_integrals(molecule)
            fermionic = qml.qchem.fermionic_observable(core, one, two)
            transform = {
                "jordan_wigner": lambda h: qml.jordan_wigner(h, tol=1e-10),
                "parity": lambda h: qml.parity_transform(h, 2 * orbitals, tol=1e-10),
                "bravyi_kitaev": lambda h: qml.bravyi_kitaev(h, 2 * orbitals, tol=1e-10),
            }[mapping]
            hamiltonian = transform(fermionic).simplify()
    except ValueError as exc:  # qchem's checks (active space, basis): name the input
        raise QflowInputError(f"PennyLane's qchem rejected {molecule}: {exc}") from exc
    return hamiltonian, 2 * orbitals


def _dhf_orbitals(molecule: Molecule) -> int:
    import pennylane as qml

    mol = qml.qchem.Molecule(
        list(molecule.symbols),
        molecule.geometry_bohr,
        charge=molecule.charge,
        basis_name=molecule.basis,
    )
    return int(mol.n_orbitals)


def _active_orbital_count(molecule: Molecule, orbitals: int) -> int:
    import pennylane as qml

    _, active = qml.qchem.active_space(
        molecule.electrons,
        orbitals,
        molecule.mult,
        molecule.active_electrons,
        molecule.active_orbitals,
    )
    return len(active)


def _pyscf_integrals(molecule: Molecule) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Core energy, one- and two-electron integrals over the active orbitals (PennyLane's
    physicists' ordering), and the active orbital count, from PySCF's (RO)HF."""
    import pennylane as qml

    try:
        from pyscf import ao2mo, gto, scf
    except ImportError as exc:
        raise QflowConfigError(
            f"{'An open-shell molecule (mult=' + str(molecule.mult) + ')' if molecule.open_shell else 'Basis ' + repr(molecule.basis)}"
            f" needs PySCF: pip install 'qflow-runtime[chem]'. Closed shells in "
            f"{', '.join(DHF_BASES)} need nothing more."
        ) from exc
    try:
        mol = gto.M(
            atom=[(s, tuple(xyz)) for s, xyz in zip(molecule.symbols, molecule.geometry_bohr)],
            unit="Bohr",
            basis=molecule.basis,
            charge=molecule.charge,
            spin=molecule.mult - 1,
            verbose=0,
        )
    except (RuntimeError, KeyError) as exc:  # an unknown basis name
        raise QflowInputError(
            f"PySCF has no basis {molecule.basis!r} for {sorted(set(molecule.symbols))}: {exc}"
        ) from exc
    hf = (scf.RHF(mol) if molecule.mult == 1 else scf.ROHF(mol)).run()
    c = hf.mo_coeff
    one = c.T @ (mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc")) @ c
    n = c.shape[1]
    # Chemists' (pq|rs) to the physicists' order qchem's fermionic_observable takes.
    two = np.swapaxes(ao2mo.restore(1, ao2mo.full(mol, c), n), 1, 3)
    core_energy = float(mol.energy_nuc())
    core, active = qml.qchem.active_space(
        molecule.electrons, n, molecule.mult, molecule.active_electrons, molecule.active_orbitals
    )
    if core:
        # Frozen doubly occupied core: its energy, and its mean field on the active space.
        core_energy += sum(2 * one[i, i] for i in core) + sum(
            2 * two[i, j, j, i] - two[i, j, i, j] for i in core for j in core
        )
        one = one.copy()
        for p in active:
            for q in active:
                one[p, q] += sum(2 * two[i, p, q, i] - two[i, p, i, q] for i in core)
    idx = np.array(active)
    return (
        np.array([core_energy]),
        one[np.ix_(idx, idx)],
        two[np.ix_(idx, idx, idx, idx)],
        len(active),
    )


def exact_ground_energy(
    hamiltonian: Any, wires: int, electrons: int | None = None, mult: int | None = None
) -> float:
    """The lowest eigenvalue of a qubit Hamiltonian, in the sector of ``electrons``.

    With ``electrons`` (the molecule's: ``Molecule.qubit_electrons``) only basis states
    with that many occupied spin orbitals count, under the Jordan-Wigner mapping; without
    it the lowest eigenvalue over every electron number is returned, which for an ion is
    another species' energy (H3+ would give neutral H3). With ``mult`` as well, only
    states of that spin multiplicity count (a singlet is not undercut by a lower
    triplet). A sparse eigensolver keeps 20 qubits within reach.

    Example:
        >>> import pennylane as qml
        >>> h = qml.Hamiltonian([1.0, -1.0], [qml.Z(0), qml.Z(1)])  # |01> is lowest
        >>> exact_ground_energy(h, 2), exact_ground_energy(h, 2, electrons=2)
        (-2.0, 0.0)
    """
    from scipy.sparse import identity as sparse_identity
    from scipy.sparse.linalg import eigsh

    matrix = hamiltonian.sparse_matrix(wire_order=range(wires)).tocsr()
    if electrons is None:
        if mult is not None:
            raise QflowInputError(
                "mult= needs electrons= too: a spin sector is taken within an electron number."
            )
        return _lowest(matrix, eigsh)
    if not isinstance(electrons, int | np.integer) or not 0 <= electrons <= wires:
        raise QflowInputError(
            f"electrons must be an int from 0 to {wires} (the spin orbitals); got {electrons!r}."
        )
    index = np.arange(2**wires)
    # Wire w is the bit of weight 2**(wires-1-w); even wires are spin up (qchem's order).
    bits = [(index >> (wires - 1 - w)) & 1 for w in range(wires)]
    occupied = sum(bits)
    keep = occupied == electrons
    if mult is not None:
        mult = _positive_int("mult", mult)
        up = sum(bits[0::2])
        keep &= (2 * up - electrons) == int(mult or 0) - 1  # the sector Sz = S
    sector = np.flatnonzero(keep)
    if sector.size == 0:
        raise QflowInputError(
            f"No state of {electrons} electrons with mult={mult} fits {wires} spin orbitals."
        )
    matrix = matrix[sector][:, sector]
    if mult is None:
        return _lowest(matrix, eigsh)
    import pennylane as qml

    s2 = qml.qchem.spin2(electrons, wires).sparse_matrix(wire_order=range(wires)).tocsr()
    s2 = s2[sector][:, sector]
    target = (mult - 1) / 2 * ((mult - 1) / 2 + 1)
    # Other multiplicities are pushed above the whole spectrum: S^2 values of one parity
    # differ by at least 2, so (S^2 - target)^2 >= 4, and the spectrum's width is at most
    # twice the sum of |coefficients|. Degenerate singlets and triplets cannot mix.
    width = 2 * float(np.sum(np.abs(hamiltonian.terms()[0])))
    identity = sparse_identity(sector.size, format="csr")
    excess = s2 - target * identity
    return _lowest(matrix + (width + 1.0) * (excess @ excess), eigsh)


def _lowest(matrix: Any, eigsh: Any) -> float:
    if matrix.shape[0] <= 512:
        return float(np.linalg.eigvalsh(matrix.toarray())[0])
    return float(eigsh(matrix, k=1, which="SA", return_eigenvectors=False)[0])
