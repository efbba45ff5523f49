"""Orchestration overhead of qflow against bare Ray, in the same run.

Three workloads of trivial electrons:
  chain    a chain of N electrons, each taking the previous output;
  fanout   a fan-out of M electrons then one reduce;
  single   a one-electron dispatch -> result, on a warm cluster.

Usage:
    python benchmarks/overhead.py [--chain 100] [--fanout 1000] [--repeats 5]
        [--out benchmarks/results/overhead.json]

Prints a table and writes JSON. Ratios are qflow / bare Ray for the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QFLOW_HOME", tempfile.mkdtemp(prefix="qflow-bench-"))

import ray

import qflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import bare_chain, bare_fanout, bare_single, chain, fanout, single


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: worker start, imports
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--chain", type=int, default=100)
    p.add_argument("--fanout", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/overhead.json")
    args = p.parse_args(argv)

    ray.init(include_dashboard=False, log_to_driver=False)
    cases = {
        "chain": (
            lambda: bare_chain(args.chain),
            lambda: qflow.dispatch_sync(chain)(args.chain).result,
            args.chain,
        ),
        "fanout": (
            lambda: bare_fanout(args.fanout),
            lambda: qflow.dispatch_sync(fanout)(args.fanout).result,
            args.fanout + 1,
        ),
        "single": (lambda: bare_single(1), lambda: qflow.dispatch_sync(single)(1).result, 1),
    }
    rows = {}
    for name, (bare, ours, n_tasks) in cases.items():
        assert bare() == ours(), f"{name}: qflow and bare Ray disagree"
        t_bare, t_qflow = _time(bare, args.repeats), _time(ours, args.repeats)
        rows[name] = {
            "tasks": n_tasks,
            "bare_ray_s": t_bare,
            "qflow_s": t_qflow,
            "ratio": t_qflow / t_bare,
            "qflow_per_task_ms": 1000 * t_qflow / n_tasks,
            "bare_per_task_ms": 1000 * t_bare / n_tasks,
        }
        print(f"  measured {name}", file=sys.stderr)

    print(
        f"{'workload':<10}{'tasks':>7}{'bare Ray':>12}{'qflow':>12}{'ratio':>8}{'qflow/task':>13}"
    )
    for name, r in rows.items():
        print(
            f"{name:<10}{r['tasks']:>7}{r['bare_ray_s'] * 1000:>10.1f}ms"
            f"{r['qflow_s'] * 1000:>10.1f}ms{r['ratio']:>8.2f}{r['qflow_per_task_ms']:>11.2f}ms"
        )
    out = {"cpus": os.cpu_count(), "ray": ray.__version__, "repeats": args.repeats, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    ray.shutdown()
    return out


if __name__ == "__main__":
    main()
