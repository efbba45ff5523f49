"""VQE: ground-state energies of molecules on any backend, as packed variational loops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qflow.algorithms.chemistry import (
    Molecule,
    check_mapping,
    check_unit,
    exact_ground_energy,
    molecular_hamiltonian,
)
from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.variational import LoopResult, minimize

__all__ = [
    "Molecule",
    "VQEResult",
    "build_circuit",
    "check_unit",
    "exact_ground_energy",
    "molecular_hamiltonian",
    "vqe",
]

ANSATZE = ("singles_doubles", "double_excitation", "uccsd")
#: The default: singles matter wherever orbitals relax (about 0.4 mHa on LiH without
#: them); for H2 their gradients vanish by symmetry and they cost nothing.
DEFAULT_ANSATZ = "singles_doubles"
#: Chemical accuracy, in milli-Hartree (1 kcal/mol).
CHEMICAL_ACCURACY_MHA = 1.6
#: Up to this many qubits a VQE result carries the exact energy (a sparse eigensolver
#: takes seconds there; beyond, memory grows as 2^n).
EXACT_MAX_WIRES = 20


@dataclass(frozen=True)
class VQEResult:
    """Energies per iteration, the final energy and params, timings and the dispatch id.

    ``energy_stderr`` is the standard error of ``energy`` with shots (None when exact);
    ``inputs`` holds everything that reproduces the run (molecule, ansatz, mapping and
    the loop's backend, optimizer, seed, shots and versions).
    """

    energies: list[float]
    energy: float
    params: np.ndarray
    iterations: int
    seconds: float
    dispatch_id: str
    loop: LoopResult
    energy_stderr: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    #: The exact ground energy in the run's electron (and spin) sector, by sparse
    #: diagonalisation; None above :data:`EXACT_MAX_WIRES` qubits.
    exact_energy: float | None = None

    @property
    def error_mha(self) -> float | None:
        """``energy - exact_energy`` in milli-Hartree (None without the exact value)."""
        return None if self.exact_energy is None else (self.energy - self.exact_energy) * 1e3

    @property
    def chemically_accurate(self) -> bool | None:
        """Whether ``energy`` is within chemical accuracy (1.6 mHa) of the exact value."""
        err = self.error_mha
        return None if err is None else abs(err) <= CHEMICAL_ACCURACY_MHA

    def to_dict(self) -> dict[str, Any]:
        """The result and its inputs as JSON-ready values (the loop's are in ``inputs``)."""
        from qflow.exports import jsonable

        return jsonable(
            {
                "energy": self.energy,
                "energy_stderr": self.energy_stderr,
                "exact_energy": self.exact_energy,
                "error_mha": self.error_mha,
                "chemically_accurate": self.chemically_accurate,
                "energies": self.energies,
                "params": self.params,
                "iterations": self.iterations,
                "converged": self.loop.converged,
                "seconds": self.seconds,
                "dispatch_id": self.dispatch_id,
                "inputs": self.inputs,
            }
        )

    def to_json(self, path: str | None = None) -> str:
        """:meth:`to_dict` as JSON text, also written to ``path`` if given."""
        from qflow.exports import write_json

        return write_json(self.to_dict(), path)

    def to_dataframe(self) -> Any:
        """One row per iteration (``step``, ``energy``); the rest in ``attrs``."""
        from qflow.exports import dataframe

        summary = {k: v for k, v in self.to_dict().items() if k != "energies"}
        return dataframe(
            {"step": list(range(len(self.energies))), "energy": self.energies}, summary
        )


def build_circuit(ansatz: str, hamiltonian: Any, wires: int, electrons: int) -> tuple[Any, int]:
    """The ansatz circuit (a QNode body returning ``expval(hamiltonian)``) and its param count."""
    import pennylane as qml

    if ansatz not in ANSATZE:
        raise QflowConfigError(
            f"Unknown ansatz {ansatz!r}. Valid ansatze are: {', '.join(ANSATZE)}."
        )
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
            qml.AllSinglesDoubles(
                params, wires=range(wires), hf_state=hf, singles=singles, doubles=doubles
            )
            return qml.expval(hamiltonian)

        return circuit, len(singles) + len(doubles)
    s_wires, d_wires = qml.qchem.excitations_to_wires(singles, doubles)

    def circuit(params: Any) -> Any:  # type: ignore[no-redef]
        qml.UCCSD(params, wires=range(wires), s_wires=s_wires, d_wires=d_wires, init_state=hf)
        return qml.expval(hamiltonian)

    return circuit, len(singles) + len(doubles)


def vqe(
    molecule: Molecule | None = None,
    *,
    hamiltonian: Any = None,
    wires: int | None = None,
    electrons: int | None = None,
    ansatz: str = DEFAULT_ANSATZ,
    optimizer: Any = None,
    backend: Any = "lightning.qubit",
    steps: int = 100,
    pack: int = 10,
    tol: float | None = 1e-8,
    initial_params: Sequence[float] | None = None,
    diff_method: str | None = None,
    mapping: str = "jordan_wigner",
    final_repeats: int = 20,
    callback: Any = None,
    progress: bool | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
) -> VQEResult:
    """Find a ground-state energy with VQE on a backend, packed ``pack`` steps per actor call.

    Args:
        molecule: the molecule (basis, charge, multiplicity and active space are its
            own); or give ``hamiltonian``, ``wires`` and ``electrons``.
        ansatz: ``"singles_doubles"`` (default: every spin-conserving single and double
            excitation on Hartree-Fock, as Givens rotations), ``"double_excitation"``
            (doubles only: exact for H2, about 0.4 mHa short on LiH) or ``"uccsd"``.
        optimizer: a PennyLane optimizer (default gradient descent, step 0.4).
        mapping: the fermion-to-qubit mapping. The built-in ansatze act in the
            Jordan-Wigner encoding, so others need your own circuit through
            :func:`qflow.variational.minimize`.
        backend, steps, pack, tol, diff_method, final_repeats, callback, progress: see
            :func:`qflow.variational.minimize`.
        name: the dispatch's name in ``qflow list`` and the UI (default: what it is,
            e.g. "VQE LiH 1.6 Å sto-3g").
        tags: labels recorded with the dispatch, e.g. ``["lih", "scan-3"]``.

    Example:
        >>> from qflow.algorithms import Molecule, vqe
        >>> round(vqe(Molecule.h2(), steps=30).energy, 3)
        -1.137
    """
    mapping = check_mapping(mapping)
    if mapping != "jordan_wigner":
        raise QflowInputError(
            f"mapping={mapping!r}: the built-in ansatze prepare Hartree-Fock and apply "
            "excitations in the Jordan-Wigner encoding, so they would be wrong here. Build "
            f"the Hamiltonian with molecular_hamiltonian(molecule, mapping={mapping!r}) and "
            "minimise your own circuit with qflow.variational.minimize."
        )
    described: dict[str, Any] = {"ansatz": ansatz, "mapping": mapping}
    if molecule is not None:
        if hamiltonian is not None:
            raise QflowInputError("Give a molecule or a hamiltonian, not both.")
        if not isinstance(molecule, Molecule):
            raise QflowInputError(
                f"molecule is a qflow.algorithms.Molecule; got "
                f"{type(molecule).__name__} {molecule!r}."
            )
        if ansatz not in ANSATZE:  # before the Hamiltonian, which can take a while
            raise QflowConfigError(
                f"Unknown ansatz {ansatz!r}. Valid ansatze are: {', '.join(ANSATZE)}."
            )
        hamiltonian, wires = molecular_hamiltonian(molecule)
        electrons = molecule.qubit_electrons
        described["molecule"] = molecule.to_dict()
    elif hamiltonian is None or wires is None or electrons is None:
        raise QflowInputError(
            "vqe needs a molecule, or a hamiltonian with wires= and electrons=: e.g. "
            "vqe(Molecule.h2()) or vqe(hamiltonian=H, wires=4, electrons=2)."
        )
    else:
        described["hamiltonian"] = {
            "wires": wires,
            "electrons": electrons,
            "terms": len(hamiltonian.terms()[0]),
        }
    circuit, n_params = build_circuit(ansatz, hamiltonian, wires, electrons)
    params = np.zeros(n_params) if initial_params is None else np.asarray(initial_params, float)
    if params.shape != (n_params,):
        raise QflowInputError(
            f"The {ansatz} ansatz for this molecule takes {n_params} params; initial_params has "
            f"shape {params.shape}."
        )
    # The exact reference first (cheap up to EXACT_MAX_WIRES qubits): the dispatch's
    # page then shows the error beside the energy.
    exact = None
    if wires <= EXACT_MAX_WIRES:
        mult = molecule.mult if molecule is not None else None
        exact = exact_ground_energy(hamiltonian, wires, electrons=electrons, mult=mult)
    title = name or default_name(molecule, wires)
    loop = minimize(
        circuit,
        params,
        wires=wires,
        backend=backend,
        optimizer=optimizer,
        steps=steps,
        pack=pack,
        tol=tol,
        diff_method=diff_method,
        final_repeats=final_repeats,
        callback=callback,
        progress=progress,
        name=title,
        tags=tags,
        about={
            "quantity": "energy",
            "unit": "Ha",
            "exact": exact,
            "experiment": experiment_text(molecule, ansatz, mapping, wires, electrons),
        },
    )
    return VQEResult(
        exact_energy=exact,
        energies=loop.costs,
        energy=loop.final_cost,
        params=loop.params,
        iterations=loop.iterations,
        seconds=loop.seconds,
        dispatch_id=loop.dispatch_id,
        loop=loop,
        energy_stderr=loop.final_cost_stderr,
        inputs={**described, **loop.inputs},
    )


def experiment_text(
    molecule: Molecule | None, ansatz: str, mapping: str, wires: int, electrons: int
) -> dict[str, str]:
    """What a VQE computes, as its page lists it first: "molecule LiH, R 1.6 Å", the
    basis, charge and spin, the active space, ansatz and mapping."""
    out: dict[str, str] = {}
    if molecule is not None:
        bond = f", R {molecule.bond_length_angstrom():.4g} Å" if len(molecule.symbols) == 2 else ""
        out["molecule"] = f"{molecule.formula}{bond}"
        out["basis"] = molecule.basis
        out["charge, multiplicity"] = f"{molecule.charge}, {molecule.mult}"
    out["active space"] = f"{electrons} electrons in {wires} spin orbitals ({wires} qubits)"
    out["ansatz"] = f"{ansatz}, {mapping.replace('_', '-')} mapping"
    return out


def default_name(molecule: Molecule | None, wires: int) -> str:
    """What a VQE run is called unless named: "VQE LiH 1.6 Å sto-3g", or "VQE 4 qubits"
    for a bare Hamiltonian."""
    if molecule is None:
        return f"VQE {wires} qubits"
    bond = f" {molecule.bond_length_angstrom():.3g} Å" if len(molecule.symbols) > 1 else ""
    return f"VQE {molecule.formula}{bond} {molecule.basis}"
