"""Variational algorithms built on qflow's packed loops: VQE (and sweeps over it)."""

from qflow.algorithms.vqe import Molecule, VQEResult, exact_ground_energy, molecular_hamiltonian, vqe

__all__ = ["Molecule", "VQEResult", "exact_ground_energy", "molecular_hamiltonian", "vqe"]
