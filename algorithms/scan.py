"""Geometry scans of any molecule: one VQE sublattice per geometry, run in parallel
where cores allow, each point beside its exact energy."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import qflow
from qflow.algorithms.chemistry import (
    Molecule,
    check_unit,
    exact_ground_energy,
    molecular_hamiltonian,
)
from qflow.algorithms.vqe import ANSATZE, DEFAULT_ANSATZ, build_circuit, experiment_text
from qflow.backends import get_backend
from qflow.exceptions import QflowConfigError, QflowInputError
from qflow.lattice import named
from qflow.loops.result import collect
from qflow.loops.spec import prepare, versions
from qflow.loops.workflow import variational_loop

__all__ = ["ScanResult", "bond_scan", "molecule_scan", "scan", "scan_h2", "stretch"]


@qflow.electron(num_cpus=0)
def report_point(
    value: float, chunks: list[dict[str, Any]], exact: float, xlabel: str = "value"
) -> float:
    """Log the point's VQE and exact energies against the scanned value, on one chart,
    so that the UI draws the scan's curve as the points finish; return the VQE energy."""
    energy = collect(chunks, "", 0.0).final_cost
    qflow.log_metric("VQE energy", energy, step=value, unit="Ha", x=xlabel, chart="energy")
    qflow.log_metric("exact energy", exact, step=value, unit="Ha", x=xlabel, chart="energy")
    return energy


@qflow.lattice
def molecule_point(
    molecule: Molecule,
    value: float,
    backend: Any,
    steps: int,
    pack: int,
    ansatz: str,
    xlabel: str = "value",
) -> dict[str, Any]:
    """VQE and the exact energy for one geometry; a sublattice of :func:`molecule_scan`."""
    hamiltonian, wires = molecular_hamiltonian(molecule)
    electrons = molecule.qubit_electrons
    circuit, n_params = build_circuit(ansatz, hamiltonian, wires, electrons)
    exact = exact_ground_energy(hamiltonian, wires, electrons=electrons, mult=molecule.mult)
    spec, state = prepare(
        circuit,
        np.zeros(n_params),
        wires=wires,
        backend=backend,
        steps=steps,
        pack=pack,
        tol=1e-8,
        about={
            "quantity": "energy",
            "unit": "Ha",
            "exact": exact,
            "experiment": experiment_text(molecule, ansatz, "jordan_wigner", wires, electrons),
        },
    )
    loop = variational_loop(spec, state)
    return {
        "value": value,
        "exact": exact,
        "chunks": loop["chunks"],
        "energy": report_point(value, loop["chunks"], exact, xlabel),
    }


def _points(values: Sequence[float], xlabel: str) -> list[Any]:
    """One :func:`molecule_point` sublattice electron per value, each named by its value
    ("R = 0.74 Å"): the page's legends and graph then say which point is which."""
    name, _, unit = xlabel.partition(" (")
    unit = f" {unit.rstrip(')')}" if unit else ""
    return [qflow.electron(named(molecule_point, f"{name} = {v:g}{unit}", ())) for v in values]


@qflow.lattice
def molecule_scan(
    molecules: Sequence[Molecule],
    values: Sequence[float],
    backend: Any = "lightning.qubit",
    steps: int = 60,
    pack: int = 20,
    ansatz: str = DEFAULT_ANSATZ,
    xlabel: str = "value",
) -> list[dict[str, Any]]:
    """One :func:`molecule_point` sublattice per geometry, run in parallel; ``xlabel``
    says what the values are ("R (Å)")."""
    return [
        point(m, v, backend, steps, pack, ansatz, xlabel)
        for point, m, v in zip(_points(values, xlabel), molecules, values)
    ]


@qflow.lattice
def bond_scan(
    bond_lengths: Sequence[float],
    backend: Any = "lightning.qubit",
    steps: int = 60,
    pack: int = 20,
    ansatz: str = DEFAULT_ANSATZ,
    unit: str = "angstrom",
) -> list[dict[str, Any]]:
    """The H2 potential energy curve: one :func:`molecule_point` sublattice per length."""
    xlabel = f"R ({_UNIT_LABEL[unit]})"
    return [
        point(Molecule.h2(b, unit=unit), b, backend, steps, pack, ansatz, xlabel)
        for point, b in zip(_points(bond_lengths, xlabel), bond_lengths)
    ]


def _describe_scan(
    molecules: Sequence[Molecule],
    values: Sequence[float],
    backend: Any = "lightning.qubit",
    steps: int = 60,
    pack: int = 20,
    ansatz: str = DEFAULT_ANSATZ,
    xlabel: str = "value",
) -> str:
    first = molecules[0]
    described = get_backend(backend).describe()
    shots = described.get("shots")
    return "\n".join(
        [
            f"molecule {first.formula}, basis {first.basis}, charge {first.charge}, "
            f"multiplicity {first.mult}",
            f"{xlabel}: {', '.join(f'{v:g}' for v in values)} ({len(values)} points)",
            f"ansatz {ansatz}; backend {described['name']}, "
            + (f"{shots} shots" if shots else "exact expectation values (no shots)"),
            f"up to {steps} VQE steps per point, in chunks of {pack}",
        ]
    )


def _describe_bonds(
    bond_lengths: Sequence[float],
    backend: Any = "lightning.qubit",
    steps: int = 60,
    pack: int = 20,
    ansatz: str = DEFAULT_ANSATZ,
    unit: str = "angstrom",
) -> str:
    molecules = [Molecule.h2(b, unit=unit) for b in bond_lengths]
    xlabel = f"R ({_UNIT_LABEL[unit]})"
    return _describe_scan(molecules, bond_lengths, backend, steps, pack, ansatz, xlabel)


molecule_scan.describe_inputs = _describe_scan
bond_scan.describe_inputs = _describe_bonds


def stretch(molecule: Molecule, length: float, atoms: tuple[int, int] = (0, 1)) -> Molecule:
    """``molecule`` with atom ``atoms[1]`` moved along the bond so that its distance to
    ``atoms[0]`` is ``length`` (in the molecule's unit); every other atom stays.

    Example:
        >>> lih = Molecule(["Li", "H"], [0, 0, 0, 0, 0, 1.6])
        >>> stretch(lih, 2.0).geometry
        (0.0, 0.0, 0.0, 0.0, 0.0, 2.0)
    """
    i, j = atoms
    n = len(molecule.symbols)
    if not (0 <= i < n and 0 <= j < n and i != j):
        raise QflowInputError(f"atoms are two different atom indices below {n}; got {atoms}.")
    xyz = np.array(molecule.geometry).reshape(-1, 3)
    axis = xyz[j] - xyz[i]
    if not np.linalg.norm(axis) > 0:
        raise QflowInputError(f"Atoms {i} and {j} coincide; a bond needs a direction.")
    xyz[j] = xyz[i] + axis / np.linalg.norm(axis) * float(length)
    return replace_geometry(molecule, xyz)


def replace_geometry(molecule: Molecule, geometry: Any) -> Molecule:
    """A copy of ``molecule`` (charge, mult, basis, active space kept) at ``geometry``."""
    data = molecule.to_dict()
    data["geometry"] = np.ravel(geometry).tolist()
    return Molecule(data.pop("symbols"), data.pop("geometry"), **data)


@dataclass(frozen=True)
class ScanResult:
    """One row per scanned value: VQE energy, exact energy, their gap, iterations.

    Each row has ``value`` (and ``bond_length`` for bond scans), ``energy``, ``exact``,
    ``error_mha``, ``iterations`` and ``molecule`` (its :meth:`Molecule.to_dict`).
    """

    rows: list[dict[str, Any]]
    dispatch_id: str
    seconds: float
    plot: Path | None
    unit: str = "angstrom"
    parameter: str = "R"
    inputs: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        label = f"{self.parameter} ({_UNIT_LABEL.get(self.unit, self.unit)})"
        lines = [f"{label:>9} {'VQE (Ha)':>13} {'exact (Ha)':>13} {'|diff| mHa':>11} {'iters':>6}"]
        for r in self.rows:
            lines.append(
                f"{r['value']:>9.3f} {r['energy']:>13.6f} {r['exact']:>13.6f} "
                f"{r['error_mha']:>11.4f} {r['iterations']:>6d}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Rows, unit, parameter and the inputs that reproduce the scan, JSON-ready."""
        from qflow.exports import jsonable

        return jsonable(
            {
                "parameter": self.parameter,
                "unit": self.unit,
                "rows": self.rows,
                "dispatch_id": self.dispatch_id,
                "seconds": self.seconds,
                "plot": self.plot,
                "inputs": self.inputs,
            }
        )

    def to_json(self, path: str | Path | None = None) -> str:
        """:meth:`to_dict` as JSON text, also written to ``path`` if given."""
        from qflow.exports import write_json

        return write_json(self.to_dict(), path)

    def to_dataframe(self) -> Any:
        """One row per scanned value; the unit, parameter and inputs in ``attrs``."""
        from qflow.exports import dataframe

        keys = ["value", "energy", "exact", "error_mha", "iterations"]
        summary = {k: v for k, v in self.to_dict().items() if k != "rows"}
        return dataframe({k: [r[k] for r in self.rows] for k in keys}, summary)


_UNIT_LABEL = {"angstrom": "Å", "bohr": "Bohr"}


def _plot(rows: list[dict[str, Any]], path: Path, xlabel: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["value"] for r in rows]
    ax.plot(xs, [r["exact"] for r in rows], "k-", label="exact (diagonalised)")
    ax.plot(xs, [r["energy"] for r in rows], "o", label="VQE (qflow)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("energy (Ha)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _check_values(values: Any, what: str, positive: bool) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise QflowInputError(
            f"{what} is a list of numbers such as [0.6, 0.74]; got {values!r}."
        ) from None
    if not out or not all(np.isfinite(out)) or (positive and min(out) <= 0):
        raise QflowInputError(
            f"{what} must be {'positive ' if positive else ''}finite numbers; got {out}."
        )
    return out


def _check_run(backend: Any, steps: Any, pack: Any, ansatz: Any) -> None:
    """What the sublattices would only find out on a worker, checked before dispatching."""
    get_backend(backend)
    for name, value in (("steps", steps), ("pack", pack)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise QflowConfigError(f"{name} must be a whole number >= 1; got {value!r}.")
    if ansatz not in ANSATZE:
        raise QflowConfigError(
            f"Unknown ansatz {ansatz!r}. Valid ansatze are: {', '.join(ANSATZE)}."
        )


def _run(
    lattice: Any,
    args: tuple[Any, ...],
    n: int,
    progress: Callable[[str], Any] | None,
    label: str,
    title: str,
    tags: Sequence[str],
) -> tuple[Any, float]:
    t0 = time.perf_counter()
    dispatch_id = qflow.dispatch(named(lattice, title, tags))(*args)
    said, last_said, last_finished = "", 0.0, -1
    while not qflow.get_result(dispatch_id, status_only=True)["status"].is_final:
        if progress is not None:
            running = qflow.get_result(dispatch_id)
            nodes = running.get_all_node_results()
            points = [n for n in nodes if n["kind"] == "sublattice"]
            finished = sum(n["status"] == "COMPLETED" for n in points)
            started = sum(n["status"] == "RUNNING" for n in points)
            # Every optimizer step logs its cost (a chunk's steps when the chunk ends):
            # counting them shows the points moving before the first one finishes.
            steps = _steps_logged(running)
            state = f"{finished}/{n} {label} done, {started} running, {steps} VQE steps"
            if started and not steps:
                state += " (starting a warm actor per point)"
            now = time.perf_counter()
            changed = state != said and (now - last_said >= 2.0 or finished != last_finished)
            if changed or now - last_said >= 5.0:  # steady news, even while nothing ends
                said, last_said, last_finished = state, now, finished
                progress(f"  {state} ({now - t0:.0f} s)")
        time.sleep(1.0)  # reading the tree costs CPU the points need
    res = qflow.get_result(dispatch_id, wait=True)
    if res.status != qflow.status.COMPLETED:
        raise qflow.exceptions.DispatchFailedError(
            f"Scan {res.dispatch_id} ended {res.status}:\n{res.error}"
        )
    return res, time.perf_counter() - t0


def _rows(res: Any, molecules: Sequence[Molecule]) -> list[dict[str, Any]]:
    rows = []
    for point, molecule in zip(res.result, molecules):
        loop = collect(point["chunks"], res.dispatch_id, 0.0)
        rows.append(
            {
                "value": point["value"],
                "energy": loop.final_cost,
                "exact": point["exact"],
                "iterations": loop.iterations,
                "error_mha": abs(loop.final_cost - point["exact"]) * 1000,
                "molecule": molecule.to_dict(),
            }
        )
    return rows


def scan(
    molecule: Molecule | Callable[[float], Molecule],
    values: Sequence[float],
    *,
    atoms: tuple[int, int] = (0, 1),
    parameter: str = "R",
    backend: Any = "lightning.qubit",
    steps: int = 60,
    pack: int = 20,
    ansatz: str = DEFAULT_ANSATZ,
    plot: str | Path | None = None,
    progress: Callable[[str], Any] | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
) -> ScanResult:
    """Scan any molecule's geometry with VQE, one parallel sublattice per value, and
    compare each point with the exact energy in the molecule's electron and spin sector.

    Args:
        molecule: a :class:`Molecule`, whose bond between ``atoms`` is set to each value
            (in the molecule's unit); or a function ``value -> Molecule`` for any other
            coordinate (an angle, a symmetric stretch...).
        values: the bond lengths, or the function's arguments.
        parameter: the scanned quantity's name in tables and plots.
        name: the dispatch's name (default e.g. "scan LiH R 1.5-1.6 Å sto-3g, 2 points").
        tags: labels recorded with the dispatch.

    Example:
        >>> from qflow.algorithms import Molecule, scan
        >>> lih = Molecule(["Li", "H"], [0, 0, 0, 0, 0, 1.6], active_electrons=2,
        ...                active_orbitals=2)
        >>> result = scan(lih, [1.5, 1.6], steps=20)
        >>> max(r["error_mha"] for r in result.rows) < 1.6
        True
    """
    if isinstance(molecule, Molecule):
        values = _check_values(values, "values (bond lengths)", positive=True)
        molecules = [stretch(molecule, v, atoms) for v in values]
        unit = molecule.unit
    elif callable(molecule):
        values = _check_values(values, "values", positive=False)
        molecules = []
        for v in values:
            made = molecule(v)
            if not isinstance(made, Molecule):
                raise QflowInputError(
                    f"The molecule function returned "
                    f"{type(made).__name__} {made!r} for {v}; it must "
                    "return a qflow.algorithms.Molecule."
                )
            molecules.append(made)
        unit = molecules[0].unit if parameter == "R" else ""
    else:
        raise QflowInputError(
            f"molecule is a Molecule or a function value -> Molecule; got "
            f"{type(molecule).__name__} {molecule!r}."
        )
    _check_run(backend, steps, pack, ansatz)
    formula = molecules[0].formula
    span = f"{min(values):g}-{max(values):g}" if len(values) > 1 else f"{values[0]:g}"
    unit_text = f" {_UNIT_LABEL[unit]}" if unit in _UNIT_LABEL else ""
    xlabel = f"{parameter} ({_UNIT_LABEL[unit]})" if unit in _UNIT_LABEL else parameter
    res, seconds = _run(
        molecule_scan,
        (molecules, values, backend, steps, pack, ansatz, xlabel),
        len(values),
        progress,
        "points",
        name
        or f"scan {formula} {parameter} {span}{unit_text} {molecules[0].basis}, "
        f"{len(values)} points",
        tags,
    )
    rows = _rows(res, molecules)
    name = "".join(molecules[0].symbols)
    path = (
        _plot(rows, Path(plot), xlabel, f"{name} energy, {molecules[0].basis.upper()}")
        if plot
        else None
    )
    inputs = {
        "backend": get_backend(backend).describe(),
        "steps": steps,
        "pack": pack,
        "ansatz": ansatz,
        "atoms": list(atoms),
        "versions": versions(),
    }
    return ScanResult(
        rows=rows,
        dispatch_id=res.dispatch_id,
        seconds=seconds,
        plot=path,
        unit=unit,
        parameter=parameter,
        inputs=inputs,
    )


def scan_h2(
    bond_lengths: Sequence[float] = (0.5, 0.6, 0.74, 0.9, 1.1, 1.3),
    *,
    backend: Any = "lightning.qubit",
    steps: int = 60,
    pack: int = 20,
    ansatz: str = DEFAULT_ANSATZ,
    plot: str | Path | None = "h2_scan.png",
    progress: Callable[[str], Any] | None = None,
    unit: str = "angstrom",
    name: str | None = None,
    tags: Sequence[str] = (),
) -> ScanResult:
    """Scan H2 bond lengths with VQE and compare with exact energies (see :func:`scan`
    for any other molecule).

    Args:
        bond_lengths: H-H distances in ``unit``.
        unit: ``"angstrom"`` (default, as PennyLane's qchem) or ``"bohr"``.
        name, tags: the dispatch's name (default e.g. "scan H2 R 0.5-1.3 Å sto-3g, 6
            points") and labels.

    Example:
        >>> from qflow.algorithms import scan_h2
        >>> result = scan_h2([0.74], steps=20, plot=None)
        >>> result.rows[0]["error_mha"] < 1.6
        True
    """
    unit = check_unit(unit)
    bonds = _check_values(bond_lengths, f"bond_lengths (distances in {unit})", positive=True)
    _check_run(backend, steps, pack, ansatz)
    span = f"{min(bonds):g}-{max(bonds):g}" if len(bonds) > 1 else f"{bonds[0]:g}"
    res, seconds = _run(
        bond_scan,
        (bonds, backend, steps, pack, ansatz, unit),
        len(bonds),
        progress,
        "bond lengths",
        name or f"scan H2 R {span} {_UNIT_LABEL[unit]} sto-3g, {len(bonds)} points",
        tags,
    )
    rows = _rows(res, [Molecule.h2(b, unit=unit) for b in bonds])
    for row in rows:
        row["bond_length"] = row["value"]
    path = (
        _plot(
            rows,
            Path(plot),
            f"H-H distance ({_UNIT_LABEL[unit]})",
            "H2 potential energy curve, STO-3G",
        )
        if plot
        else None
    )
    inputs = {
        "backend": get_backend(backend).describe(),
        "steps": steps,
        "pack": pack,
        "ansatz": ansatz,
        "versions": versions(),
    }
    return ScanResult(
        rows=rows, dispatch_id=res.dispatch_id, seconds=seconds, plot=path, unit=unit, inputs=inputs
    )


def _steps_logged(res: Any) -> int:
    """The optimizer steps logged so far by a dispatch and its sublattices."""
    total = len(res.get_metrics().get("cost", []))
    for node in res.get_all_node_results():
        child = node.get("sublattice_result")
        if child is not None:
            total += _steps_logged(child)
    return total
