"""A qflow server over loopback against the same dispatch made on the head, in one run.

A head is started with ``qflow start --listen 127.0.0.1:PORT`` in a fresh home. Two
client processes then take turns, each run repeated:

  on head     a script on the head's machine, joined to the head (the baseline)
  remote      a script with QFLOW_SERVER and QFLOW_TOKEN, its own home, no Ray

Workloads, timed from dispatch to the Result in hand, warm (after one untimed run):

  one         one electron returning its input
  fanout      1,000 electrons (x + 1 each) and a sum

Every figure is the median of --repeats runs, with its min-max spread, and the ratio
remote / on head of the medians.

Usage: python benchmarks/remote.py [--repeats 15] [--out benchmarks/results/remote.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import started_head

CLIENT = r"""
import json, sys, time
import qflow

@qflow.electron
def echo(x):
    return x

@qflow.electron
def inc(x):
    return x + 1

@qflow.electron
def total(xs):
    return sum(xs)

@qflow.lattice
def one(x):
    return echo(x)

@qflow.lattice
def fanout(n):
    return total([inc(i) for i in range(n)])

workload, repeats = sys.argv[1], int(sys.argv[2])
flow, arg = (one, 1) if workload == "one" else (fanout, 1000)
qflow.get_result(qflow.dispatch(flow)(arg), wait=True)  # warm: connections, actors
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    res = qflow.get_result(qflow.dispatch(flow)(arg), wait=True)
    times.append(time.perf_counter() - t0)
    assert res.status == "COMPLETED", res.error
print(json.dumps(times))
"""


def _run(env: dict[str, str], workload: str, repeats: int) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, workload, str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    times: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "max_ms": max(times) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2, help="Alternations of the two.")
    parser.add_argument("--out", default="benchmarks/results/remote.json")
    args = parser.parse_args()

    results: dict[str, dict[str, list[float]]] = {}
    with started_head() as head:
        for workload in ("one", "fanout"):
            reps = args.repeats if workload == "one" else max(3, args.repeats // 3)
            runs: dict[str, list[float]] = {"on head": [], "remote": []}
            for _ in range(args.rounds):  # alternated, so drift hits both alike
                runs["on head"] += _run(head.on_head, workload, reps)
                runs["remote"] += _run(head.remote, workload, reps)
            results[workload] = runs

    report = {}
    print(f"{'workload':<8} {'where':<8} {'median ms':>10} {'min-max ms':>18} {'ratio':>6}")
    for workload, runs in results.items():
        head = _summary(runs["on head"])
        remote = _summary(runs["remote"])
        ratio = remote["median_ms"] / head["median_ms"]
        report[workload] = {"on head": head, "remote": remote, "ratio": ratio}
        for where, s in (("on head", head), ("remote", remote)):
            spread = f"{s['min_ms']:.1f}-{s['max_ms']:.1f}"
            shown = f"{ratio:6.2f}" if where == "remote" else ""
            print(f"{workload:<8} {where:<8} {s['median_ms']:>10.1f} {spread:>18} {shown}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
