"""Electrons as Slurm jobs (through submitit) beside electrons on Ray.

Needs a reachable Slurm (``sbatch`` on the PATH); ``python scripts/local_slurm.py start``
brings one up on this machine.

    python examples/slurm_workflow.py
"""

import qflow as ct


@ct.electron(executor="slurm")
def simulate(seed: int) -> float:
    import random

    return random.Random(seed).random()


@ct.electron
def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@ct.lattice
def workflow(seeds: list[int]) -> float:
    return mean([simulate(s) for s in seeds])


def main() -> None:
    result = ct.dispatch_sync(workflow)([1, 2, 3])
    print(result.status, f"{result.result:.6f}")


if __name__ == "__main__":
    main()
