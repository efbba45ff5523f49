"""Per-electron latency of a chain of trivial electrons, three ways, in one run:
per-electron Slurm jobs, Ray-on-Slurm (workers inside one Slurm job), plain local Ray.

Needs a running Slurm (e.g. `python scripts/local_slurm.py start`, then
SLURM_CONF=/tmp/qflow-slurm/etc/slurm.conf).
Usage: python benchmarks/slurm.py [--chain 10] [--out benchmarks/results/slurm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QFLOW_HOME", tempfile.mkdtemp(prefix="qflow-bench-"))

import ray

import qflow
from qflow.executors import SlurmExecutor
from qflow.slurm_cluster import slurm_down, slurm_up


def chain_lattice(**options):
    @qflow.electron(**options)
    def inc(x):
        return x + 1

    @qflow.lattice
    def chain(n):
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    return chain


def per_electron(lat, n: int) -> float:
    qflow.dispatch_sync(lat)(1)  # warm-up
    t0 = time.perf_counter()
    res = qflow.dispatch_sync(lat)(n)
    assert res.result == n, res.error
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--chain", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/slurm.json")
    args = p.parse_args(argv)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    rows = {"local Ray": per_electron(chain_lattice(), args.chain)}
    alloc = slurm_up(1, time_min=10)
    try:
        rows["Ray-on-Slurm"] = per_electron(
            chain_lattice(resources={alloc.resource: 1}), args.chain
        )
    finally:
        slurm_down(alloc)
    rows["Slurm job per electron"] = per_electron(
        chain_lattice(executor=SlurmExecutor(time=5, poll_s=0.1)), args.chain
    )
    base = rows["local Ray"]
    print(f"{'way':<24}{'ms / electron':>15}{'x local Ray':>13}")
    for name, t in rows.items():
        print(f"{name:<24}{t * 1000:>15.1f}{t / base:>13.1f}")
    out = {"chain": args.chain, "s_per_electron": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    ray.shutdown()
    return out


if __name__ == "__main__":
    main()
