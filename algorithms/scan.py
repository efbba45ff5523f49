"""Bond-length scans: one VQE sublattice per geometry, run in parallel where cores allow."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import qflow
from qflow.algorithms.vqe import (ANSATZE, Molecule, build_circuit, check_unit,
                                  exact_ground_energy,
                                  molecular_hamiltonian)
from qflow.backends import get_backend
from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.variational import collect, prepare, variational_loop

__all__ = ["ScanResult", "bond_scan", "scan_h2"]


@qflow.electron(num_cpus=0)
def report_point(bond_length: float, chunks: list[dict[str, Any]], exact: float) -> float:
    """Log the point's VQE and exact energies against the bond length, so that the UI
    draws the scan's curve as the points finish; return the VQE energy."""
    energy = collect(chunks, "", 0.0).final_cost
    qflow.log_metric("energy", energy, step=bond_length)
    qflow.log_metric("exact energy", exact, step=bond_length)
    return energy


@qflow.lattice
def vqe_point(bond_length: float, backend: Any, steps: int, pack: int,
              ansatz: str, unit: str = "angstrom") -> dict[str, Any]:
    """VQE for H2 at one bond length (in ``unit``); a sublattice of :func:`bond_scan`."""
    molecule = Molecule.h2(bond_length, unit=unit)
    hamiltonian, wires = molecular_hamiltonian(molecule)
    circuit, n_params = build_circuit(ansatz, hamiltonian, wires, molecule.electrons)
    loop_id, spec_blob, state = prepare(circuit, np.zeros(n_params), wires=wires,
                                        backend=backend, steps=steps, pack=pack, tol=1e-8)
    loop = variational_loop(loop_id, spec_blob, state, steps, pack)
    exact = exact_ground_energy(hamiltonian, wires, electrons=molecule.electrons)
    return {"bond_length": bond_length, "exact": exact, "chunks": loop["chunks"],
            "energy": report_point(bond_length, loop["chunks"], exact)}


@qflow.lattice
def bond_scan(bond_lengths: Sequence[float], backend: Any = "lightning.qubit", steps: int = 60,
              pack: int = 20, ansatz: str = "double_excitation",
              unit: str = "angstrom") -> list[dict[str, Any]]:
    """The H2 potential energy curve: one :func:`vqe_point` sublattice per bond length."""
    point = qflow.electron(vqe_point)
    return [point(b, backend, steps, pack, ansatz, unit) for b in bond_lengths]


@dataclass(frozen=True)
class ScanResult:
    """One row per bond length: VQE energy, exact energy, their gap, iterations."""

    rows: list[dict[str, float]]
    dispatch_id: str
    seconds: float
    plot: Path | None
    unit: str = "angstrom"

    def table(self) -> str:
        label = f"R ({_UNIT_LABEL[self.unit]})"
        lines = [f"{label:>9} {'VQE (Ha)':>13} {'exact (Ha)':>13} {'|diff| mHa':>11} "
                 f"{'iters':>6}"]
        for r in self.rows:
            lines.append(f"{r['bond_length']:>9.3f} {r['energy']:>13.6f} {r['exact']:>13.6f} "
                         f"{r['error_mha']:>11.4f} {r['iterations']:>6d}")
        return "\n".join(lines)


_UNIT_LABEL = {"angstrom": "Å", "bohr": "Bohr"}


def _plot(rows: list[dict[str, float]], path: Path, unit: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bonds = [r["bond_length"] for r in rows]
    ax.plot(bonds, [r["exact"] for r in rows], "k-", label="exact (diagonalised)")
    ax.plot(bonds, [r["energy"] for r in rows], "o", label="VQE (qflow)")
    ax.set_xlabel(f"H-H distance ({_UNIT_LABEL[unit]})")
    ax.set_ylabel("energy (Ha)")
    ax.set_title("H2 potential energy curve, STO-3G")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def scan_h2(bond_lengths: Sequence[float] = (0.5, 0.6, 0.74, 0.9, 1.1, 1.3), *,
            backend: Any = "lightning.qubit", steps: int = 60, pack: int = 20,
            ansatz: str = "double_excitation", plot: str | Path | None = "h2_scan.png",
            progress: Callable[[str], Any] | None = None, unit: str = "angstrom"
            ) -> ScanResult:
    """Scan H2 bond lengths with VQE and compare with exact energies.

    Args:
        bond_lengths: H-H distances in ``unit``.
        unit: ``"angstrom"`` (default, as PennyLane's qchem) or ``"bohr"``.

    Example:
        >>> from qflow.algorithms import scan_h2
        >>> result = scan_h2([0.74], steps=20, plot=None)
        >>> result.rows[0]["error_mha"] < 1.6
        True
    """
    unit = check_unit(unit)
    try:
        bonds = [float(b) for b in bond_lengths]
    except (TypeError, ValueError):
        raise QflowInputError(f"bond_lengths is a list of distances in {unit} such as "
                              f"[0.6, 0.74]; got {bond_lengths!r}.") from None
    if not bonds or not all(np.isfinite(bonds)) or min(bonds) <= 0:
        raise QflowInputError(f"bond_lengths must be positive distances in {unit}; got "
                              f"{bonds}.")
    # Everything the sublattices would only find out on a worker is checked here,
    # before anything is dispatched.
    get_backend(backend)
    for name, value in (("steps", steps), ("pack", pack)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise QflowConfigError(f"{name} must be a whole number >= 1; got {value!r}.")
    if ansatz not in ANSATZE:
        raise QflowConfigError(f"Unknown ansatz {ansatz!r}. Valid ansatze are: "
                               f"{', '.join(ANSATZE)}.")
    t0 = time.perf_counter()
    dispatch_id = qflow.dispatch(bond_scan)(bonds, backend, steps, pack, ansatz, unit)
    done = -1
    while not qflow.get_result(dispatch_id, status_only=True)["status"].is_final:
        nodes = qflow.get_result(dispatch_id).get_all_node_results()
        finished = sum(n["status"] == "COMPLETED" for n in nodes if n["kind"] == "sublattice")
        if progress is not None and finished != done:
            done = finished
            progress(f"  {finished}/{len(bonds)} bond lengths done "
                     f"({time.perf_counter() - t0:.0f} s)")
        time.sleep(0.5)
    res = qflow.get_result(dispatch_id, wait=True)
    if res.status != qflow.status.COMPLETED:
        raise qflow.exceptions.DispatchFailedError(
            f"Scan {res.dispatch_id} ended {res.status}:\n{res.error}")
    rows = []
    for point in res.result:
        loop = collect(point["chunks"], res.dispatch_id, 0.0)
        rows.append({"bond_length": point["bond_length"], "energy": loop.final_cost,
                     "exact": point["exact"], "iterations": loop.iterations,
                     "error_mha": abs(loop.final_cost - point["exact"]) * 1000})
    path = _plot(rows, Path(plot), unit) if plot else None
    return ScanResult(rows=rows, dispatch_id=res.dispatch_id,
                      seconds=time.perf_counter() - t0, plot=path, unit=unit)
