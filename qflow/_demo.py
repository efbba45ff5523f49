"""The example workflow ``qflow demo`` runs: a Monte-Carlo estimate of pi, fanned out."""

from __future__ import annotations

import math

import numpy as np

import qflow


@qflow.electron
def sample(seed: int, n: int) -> int:
    """Count random points of the unit square that fall inside the quarter circle."""
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2))
    return int((np.einsum("ij,ij->i", xy, xy) <= 1.0).sum())


@qflow.electron
def estimate(hits: list[int], n: int) -> float:
    return 4.0 * sum(hits) / (n * len(hits))


@qflow.lattice
def estimate_pi(chunks: int = 8, n: int = 200_000) -> float:
    """Fan ``chunks`` samplers out on Ray, then reduce them to one estimate."""
    return estimate([sample(seed, n) for seed in range(chunks)], n)


def run(chunks: int = 8, n: int = 200_000) -> qflow.Result:
    print(f"dispatching estimate_pi: {chunks} parallel electrons x {n:,} samples ...")
    dispatch_id = qflow.dispatch(estimate_pi)(chunks, n)
    res = qflow.get_result(dispatch_id, wait=True)
    print(f"{'node':<16}{'status':<11}{'ms':>8}")
    for node in res.get_all_node_results():
        ms = (node["end_time"] - node["start_time"]).total_seconds() * 1000
        print(
            f"{node['node_name']}({node['node_id']})".ljust(16) + f"{node['status']:<11}{ms:>8.1f}"
        )
    print(f"status {res.status}; pi ~ {res.result:.5f} (error {abs(res.result - math.pi):.1e})")
    print(f"dispatch id {dispatch_id}: see `qflow show {dispatch_id}`")
    return res
