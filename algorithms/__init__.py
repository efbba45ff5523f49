"""Variational algorithms built on qflow's packed loops: VQE and bond-length scans."""

from qflow.algorithms.scan import ScanResult, bond_scan, scan_h2
from qflow.algorithms.vqe import (Molecule, VQEResult, build_circuit, exact_ground_energy,
                                  molecular_hamiltonian, vqe)

__all__ = ["Molecule", "ScanResult", "VQEResult", "bond_scan", "build_circuit",
           "exact_ground_energy", "molecular_hamiltonian", "scan_h2", "vqe"]
