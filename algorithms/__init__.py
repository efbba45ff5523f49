"""Variational algorithms built on qflow's packed loops: VQE, QAOA and scans."""

from qflow.algorithms.chemistry import Molecule, exact_ground_energy, molecular_hamiltonian
from qflow.algorithms.qaoa import QAOAResult, brute_force_maxcut, cut_size, interpolate, qaoa_maxcut
from qflow.algorithms.scan import ScanResult, bond_scan, scan, scan_h2, stretch
from qflow.algorithms.vqe import VQEResult, build_circuit, vqe

__all__ = [
    "Molecule",
    "QAOAResult",
    "ScanResult",
    "VQEResult",
    "bond_scan",
    "brute_force_maxcut",
    "build_circuit",
    "cut_size",
    "exact_ground_energy",
    "interpolate",
    "molecular_hamiltonian",
    "qaoa_maxcut",
    "scan",
    "scan_h2",
    "stretch",
    "vqe",
]
