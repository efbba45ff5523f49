"""A Covalent workflow, unchanged but for its import: electrons, a sublattice, a
bash dependency and a retry, dispatched and read back by id.

    python examples/covalent_workflow.py
"""

import qflow as ct


@ct.electron
def energy(bond: float) -> float:
    # A Morse curve stands in for an expensive calculation.
    import math

    return (1 - math.exp(-1.9 * (bond - 0.74))) ** 2 - 1


@ct.electron(deps_bash=ct.DepsBash(["echo preparing"]))
def lowest(points: list[tuple[float, float]]) -> tuple[float, float]:
    return min(points, key=lambda p: p[1])


@ct.electron
@ct.lattice
def curve(bonds: list[float]) -> list[tuple[float, float]]:
    return [(b, energy(b)) for b in bonds]


@ct.lattice
def workflow(bonds: list[float]) -> tuple[float, float]:
    return lowest(curve(bonds))


def main() -> None:
    dispatch_id = ct.dispatch(workflow)([0.5, 0.6, 0.7, 0.74, 0.8, 1.0])
    result = ct.get_result(dispatch_id, wait=True)
    print(result.status, result.result)
    bond, value = result.result
    print(f"minimum at {bond} Å: {value:.4f}")


if __name__ == "__main__":
    main()
