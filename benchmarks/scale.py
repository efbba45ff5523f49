"""How qflow's dispatcher scales with the graph, against bare Ray in the same run.

Workloads of trivial electrons, each timed for qflow (dispatch -> result) and for
bare Ray doing the same tasks:
  fanout N   N independent electrons, then one reduce over all of them;
  chain N    N electrons, each taking the previous output;
  sum N      N electrons whose outputs the lattice adds up with ``sum()`` (OP nodes
             evaluated by the dispatcher; bare Ray sums in the driver);
  single     a one-electron dispatch -> result on a warm cluster;
  big N      N electrons each returning a 50 MiB array, then one reduce: the
             dispatcher's memory must not grow with the outputs' size;
  packing    qflow with its default packing against qflow with QFLOW_PACKING=off (a
             task per call), for the 10,000 fan-out and for 1,000 electrons of 20 ms
             (where packing cannot pay, and must not cost).

The dispatcher runs in this process (embedded Ray), so its peak memory is this
process's peak during the run, above what it was before: RSS sampled every 20 ms, and
for the large-output workload also USS (private memory) every 50 ms. RSS counts the
pages of Ray's shared object store that this process maps when it reads a large output
to store it; USS does not. USS is not sampled elsewhere: reading it costs about 2 ms
of this process's time, which would slow the dispatcher it measures. RSS growth also
hides memory that earlier runs freed and a later one reuses, so each workload (but the
large outputs) runs once more, untimed, under tracemalloc: the peak of the Python
objects the dispatching process allocates, which shows how memory grows with N.

Usage:
    python benchmarks/scale.py [--quick] [--repeats 3] [--out benchmarks/results/scale.json]

Prints a markdown table (medians, with min-max over the repeats) and writes JSON and
a PNG of time and memory against N. Both sides are warmed up first; workloads of at
most 1,000 electrons run five times the repeats, and of at most 100 ten times.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("QFLOW_HOME", tempfile.mkdtemp(prefix="qflow-bench-"))

import psutil
import ray

import qflow

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import (
    bare_big_outputs,
    bare_chain,
    bare_fanout,
    bare_summed,
    big_outputs,
    chain,
    fanout,
    naps20,
    single,
    summed,
)


class PeakMemory:
    """Peak RSS (and with ``uss``, USS) of this process while in the ``with`` block, in
    MiB above what they were on entry."""

    def __init__(self, uss: bool = False) -> None:
        self.uss = uss

    def _read(self) -> tuple[int, int]:
        if self.uss:
            m = self._proc.memory_full_info()
            return m.rss, m.uss
        rss = self._proc.memory_info().rss
        return rss, rss

    def __enter__(self) -> PeakMemory:
        self._proc = psutil.Process()
        gc.collect()
        self.base = self._read()
        self.peak = list(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _take(self) -> None:
        rss, uss = self._read()
        self.peak = [max(self.peak[0], rss), max(self.peak[1], uss)]

    def _sample(self) -> None:
        while not self._stop.wait(0.05 if self.uss else 0.02):
            self._take()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    @property
    def rss_mib(self) -> float:
        return (self.peak[0] - self.base[0]) / 2**20

    @property
    def uss_mib(self) -> float:
        return (self.peak[1] - self.base[1]) / 2**20


def _time(fn, n, uss: bool = False) -> tuple[float, float, float]:
    with PeakMemory(uss) as mem:
        t0 = time.perf_counter()
        fn(n)
        seconds = time.perf_counter() - t0
    return seconds, mem.rss_mib, mem.uss_mib


def python_peak_mib(fn, n: int) -> float:
    """Peak of the Python objects this process allocates during one more, untimed run
    (tracemalloc slows it down): unlike RSS, not hidden by memory that earlier runs
    freed and this one reuses, so it shows how the dispatcher's memory grows with N."""
    gc.collect()
    tracemalloc.start()
    try:
        fn(n)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _qflow(lat):
    def run(n: int) -> None:
        res = qflow.dispatch_sync(lat)(n)
        if res.status != "COMPLETED":
            raise RuntimeError(f"{lat.__name__}({n}) ended {res.status}: {res.error}")

    return run


def measure(
    name: str, n: int, bare, ours, repeats: int, uss: bool = False, traced: bool = True
) -> dict:
    rows = {
        "bare": [],
        "qflow": [],
        "qflow_mib": [],
        "bare_mib": [],
        "qflow_uss_mib": [],
        "bare_uss_mib": [],
    }
    # Alternate, and swap which side goes first every other repeat (bare, qflow, qflow,
    # bare, ...): drift on a noisy box, and whatever one run leaves Ray to clean up
    # during the next, then hit both sides alike.
    for i in range(repeats):
        for who, fn in (("bare", bare), ("qflow", ours))[:: 1 if i % 2 == 0 else -1]:
            s, rss_mib, uss_mib = _time(fn, n, uss)
            rows[who].append(s)
            rows[f"{who}_mib"].append(rss_mib)
            if uss:
                rows[f"{who}_uss_mib"].append(uss_mib)
    traced_mib = python_peak_mib(ours, n) if traced else None
    ratios = [q / b for q, b in zip(rows["qflow"], rows["bare"])]
    med = statistics.median
    out = {
        "workload": name,
        "n": n,
        "repeats": repeats,
        **rows,
        "bare_s": med(rows["bare"]),
        "qflow_s": med(rows["qflow"]),
        "ratio": med(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "qflow_peak_mib": med(rows["qflow_mib"]),
        "bare_peak_mib": med(rows["bare_mib"]),
        "qflow_peak_uss_mib": med(rows["qflow_uss_mib"]) if uss else None,
        "bare_peak_uss_mib": med(rows["bare_uss_mib"]) if uss else None,
        "qflow_python_peak_mib": traced_mib,
    }

    def mem(who: str) -> str:
        uss_text = f" / {out[f'{who}_peak_uss_mib']:.0f}" if uss else ""
        return f"{out[f'{who}_peak_mib']:.0f}{uss_text} MiB"

    python_text = "-" if traced_mib is None else f"{traced_mib:.1f} MiB"
    print(
        f"| {name} | {n:,} | {out['bare_s']:.2f} s | {out['qflow_s']:.2f} s | "
        f"{out['ratio']:.2f}x ({out['ratio_min']:.2f}-{out['ratio_max']:.2f}) | "
        f"{mem('qflow')} | {mem('bare')} | {python_text} |",
        flush=True,
    )
    return out


def _repeats(n: int, repeats: int) -> int:
    """More repeats for short workloads: a sample of at most 1,000 electrons takes about
    a second or less, and one of 100 about a tenth, where this box's noise moves a
    single ratio by a tenth or more."""
    return repeats * 10 if n <= 100 else repeats * 5 if n <= 1000 else repeats


def single_latency(repeats: int) -> dict:
    qflow.dispatch_sync(single)(0)  # warm: workers up, function cached
    times = []
    for i in range(max(20, repeats * 10)):
        t0 = time.perf_counter()
        qflow.dispatch_sync(single)(i)
        times.append((time.perf_counter() - t0) * 1000)
    out = {
        "workload": "single",
        "ms": statistics.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "samples": len(times),
    }
    print(
        f"| single dispatch -> result, warm | 1 | - | {out['ms']:.1f} ms "
        f"({out['ms_min']:.1f}-{out['ms_max']:.1f}) | - | - | - | - |",
        flush=True,
    )
    return out


def packing_on_off(name: str, n: int, lat, repeats: int) -> dict:
    """qflow with packing (the default) against QFLOW_PACKING=off, alternated."""

    def with_packing(value: str):
        run = _qflow(lat)

        def go(n: int) -> None:
            os.environ["QFLOW_PACKING"] = value
            try:
                run(n)
            finally:
                os.environ.pop("QFLOW_PACKING", None)

        return go

    out = measure(
        f"{name}, packing on vs off",
        n,
        with_packing("off"),
        with_packing("on"),
        repeats,
        traced=False,
    )
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for name, color in (("fanout", "tab:blue"), ("chain", "tab:green"), ("sum", "tab:purple")):
        rows = sorted((r for r in results if r["workload"] == name), key=lambda r: r["n"])
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        ax_t.plot(ns, [r["qflow_s"] for r in rows], "o-", color=color, label=f"qflow {name}")
        ax_t.plot(
            ns, [r["bare_s"] for r in rows], "x--", color=color, alpha=0.6, label=f"bare Ray {name}"
        )
        ax_m.plot(
            ns,
            [r["qflow_python_peak_mib"] for r in rows],
            "o-",
            color=color,
            label=f"qflow {name}, Python objects",
        )
        ax_m.plot(
            ns,
            [r["qflow_peak_mib"] for r in rows],
            "x:",
            color=color,
            alpha=0.6,
            label=f"qflow {name}, RSS growth",
        )
    for ax, label in ((ax_t, "seconds (median)"), (ax_m, "dispatcher peak memory (MiB)")):
        ax.set_xlabel("electrons (N)")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:  # --only may leave a chart with no curve
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    # Time on log-log (N spans 100 to 20,000); memory on linear axes, where linear
    # growth shows as a straight line.
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    fig.suptitle("qflow dispatcher against bare Ray, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 2,000, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/scale.json")
    parser.add_argument(
        "--only",
        default="fanout,chain,sum,single,packing,big",
        help="comma-separated workloads to run (default: all)",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    repeats = args.repeats or (2 if args.quick else 3)
    fan = [500, 2000] if args.quick else [1000, 10_000, 20_000]
    chains = [100, 500] if args.quick else [100, 1000]
    sums = [2000] if args.quick else [10_000]

    qflow.init()
    print(f"Ray {ray.__version__}, {os.cpu_count()} cores, {repeats} repeats\n")
    print(
        "| workload | N | bare Ray | qflow | ratio (min-max) | qflow peak RSS (/ USS) "
        "| bare peak RSS (/ USS) | qflow Python peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    # Warm both sides first (workers started, functions exported and imported), so the
    # first repeat of the first workload is not a cold start; single_latency and
    # latency.py measure cold starts on their own.
    bare_fanout(20)
    _qflow(fanout)(20)
    results = []
    if "fanout" in only:
        results += [
            measure("fanout", n, bare_fanout, _qflow(fanout), _repeats(n, repeats)) for n in fan
        ]
    if "chain" in only:
        results += [
            measure("chain", n, bare_chain, _qflow(chain), _repeats(n, repeats)) for n in chains
        ]
    if "sum" in only:
        results += [measure("sum", n, bare_summed, _qflow(summed), repeats) for n in sums]
    # Before the large outputs: freeing 400 MiB of them slows whatever runs in the next
    # second or two, which is not what a warm dispatch costs.
    if "single" in only:
        results.append(single_latency(repeats))
    if "packing" in only:
        print("\n(packing: 'bare Ray' is qflow with QFLOW_PACKING=off, 'qflow' with packing)")
        results.append(packing_on_off("fanout", fan[-1] if args.quick else 10_000, fanout, repeats))
        results.append(packing_on_off("20 ms each", 200 if args.quick else 1000, naps20, repeats))
    if "big" in only:
        results.append(
            measure(
                "big 50 MiB",
                8,
                bare_big_outputs,
                _qflow(big_outputs),
                repeats,
                uss=True,
                traced=False,
            )
        )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"ray": ray.__version__, "cores": os.cpu_count(), "results": results}, indent=1)
    )
    plot([r for r in results if "n" in r], out.with_suffix(".png"))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
