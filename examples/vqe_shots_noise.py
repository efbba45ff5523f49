"""H2 with VQE three ways: exact, with shots (an error bar, a seeded rerun), and noisy.

python examples/vqe_shots_noise.py [--json out.json]
"""

import argparse

from qflow.algorithms import Molecule, exact_ground_energy, molecular_hamiltonian, vqe
from qflow.backends import get_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the shots run (with its inputs) here")
    args = parser.parse_args()

    h2 = Molecule.h2(0.7414)  # Å
    hamiltonian, wires = molecular_hamiltonian(h2)
    exact = exact_ground_energy(hamiltonian, wires, h2.electrons, mult=h2.mult)
    print(f"exact (full CI)      {exact:.6f} Ha")

    clean = vqe(h2, steps=30, pack=15)
    print(f"VQE, exact simulator {clean.energy:.6f} Ha  ({clean.iterations} iterations)")

    shots = get_backend("default.qubit", shots=4000, seed=7)
    noisy_stats = vqe(h2, backend=shots, steps=60, pack=20)
    print(
        f"VQE, 4000 shots      {noisy_stats.energy:.6f} ± {noisy_stats.energy_stderr:.6f} Ha"
        f"  ({noisy_stats.iterations} iterations, stopped on shot noise: "
        f"{noisy_stats.loop.converged})"
    )
    if args.json:
        noisy_stats.to_json(args.json)

    for p in (0.002, 0.01):
        noisy = vqe(h2, backend=get_backend("default.mixed", noise=p), steps=20, pack=20)
        print(
            f"VQE, depolarising {p:<5} {noisy.energy:.6f} Ha  "
            f"(+{(noisy.energy - exact) * 1000:.1f} mHa from noise)"
        )


if __name__ == "__main__":
    main()
