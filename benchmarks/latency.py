"""Per-iteration latency of a VQE loop (H2, lightning.qubit), all in one run.

Part 1, ratios to the best bare loop this machine runs:
  bare        PennyLane optimizer + QNode in a clean process with no Ray, measured
              with OpenMP at 1 thread and at its default, the faster kept (the
              actors run lightning with 1 thread; a baseline slowed by thread
              oversubscription would flatter everything measured against it), and
              run again beside every packed run: the baseline is the median of all
              its runs, so that a drift in the machine's speed during the run
              cannot put a packed figure below it
  task/iter   one Ray task per iteration (rebuilds the device every time)
  actor/iter  one actor call per iteration (device kept warm in the actor)
  packed K    qflow.variational.minimize with pack=K (steady state: after the
              first chunk, which starts the actor)

Part 2, a simulated remote QPU at several round trips:
  client      the loop driven from the client, off the QPU's node: every circuit
              batch pays the round trip
  colocated   the packed loop, its actor placed on the QPU's gateway node

Part 3, small quantum jobs: ``qaoa_maxcut`` on an 8-node 3-regular graph (networkx
seed 1), p=1, ``restarts=4``, its default steps, warm (a run just before started the
actors), from the call to its result; against the same four starts (same angles, same
optimizer, same steps) one after another in plain PennyLane in a clean process.

Start-up: a one-step loop from minimize() to its result, with a new actor (cold:
a process starts and imports PennyLane) and with a warm one from the pool.

Every figure is the median of --repeats runs, with its min-max spread.

Runs on a two-node ray.cluster_utils.Cluster (head + gateway holding the QPU
resource) so "off the QPU's node" is real. Writes JSON, a markdown table and a PNG.

Usage: python benchmarks/latency.py [--quick] [--out-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QFLOW_HOME", tempfile.mkdtemp(prefix="qflow-bench-"))

import numpy as np
import pennylane as qml
import ray
from pennylane import numpy as pnp
from ray.cluster_utils import Cluster

import qflow
from qflow.algorithms import Molecule, build_circuit, molecular_hamiltonian
from qflow.backends import get_backend
from qflow.backends.simulated import SIMULATED_QPU_RESOURCE
from qflow.runtime.ray_cluster import RAY_SYSTEM_CONFIG
from qflow.variational import minimize


def h2_circuit():
    mol = Molecule.h2(1.3228, unit="bohr")
    hamiltonian, wires = molecular_hamiltonian(mol)
    circuit, n_params = build_circuit("double_excitation", hamiltonian, wires, mol.electrons)
    return circuit, wires, n_params


def bare_loop(backend, iters: int) -> float:
    circuit, wires, n = h2_circuit()
    qnode = qml.QNode(circuit, backend.make_device(wires), diff_method=backend.diff_method)
    opt, params = qml.GradientDescentOptimizer(0.4), pnp.zeros(n, requires_grad=True)
    opt.step_and_cost(qnode, params)  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        params, _ = opt.step_and_cost(qnode, params)
    return (time.perf_counter() - t0) / iters


_BARE_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from latency import bare_loop
from qflow.backends import get_backend
for _ in range({times}):
    print(bare_loop(get_backend("lightning.qubit"), {iters}))
"""


#: OpenMP settings the bare loop is measured at (None: the library's default).
_THREADS = {"omp=1": "1", "omp=default": None}


def bare_run(iters: int, label: str, times: int = 1) -> list[float]:
    """``times`` bare loops, one after another in a clean process (no Ray beside it),
    at the OpenMP setting ``label``; seconds per iteration of each. (One process for
    all of them: a process spends about 3 s importing PennyLane.)"""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if _THREADS[label]:
        env["OMP_NUM_THREADS"] = _THREADS[label]
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _BARE_SCRIPT.format(
                here=str(Path(__file__).resolve().parent), iters=iters, times=times
            ),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(line) for line in run.stdout.strip().splitlines()[-times:]]


def best_bare_loop(iters: int, repeats: int) -> dict:
    """The bare loop at 1 OpenMP thread and at the default, ``repeats`` times each; the
    faster setting is kept, and measured again beside every packed run (see main)."""
    out = {label: bare_run(iters, label, repeats) for label in _THREADS}
    best = min(out, key=lambda k: float(np.median(out[k])))
    return {"runs": out, "best": best, "s_per_iter": float(np.median(out[best]))}


#: Part 3's problem: qaoa_maxcut's defaults, and the starts it makes with this seed.
QAOA_RESTARTS, QAOA_SEED, QAOA_STEPS = 4, 7, 150


def qaoa_edges() -> list[tuple[int, int]]:
    import networkx as nx

    return [tuple(e) for e in nx.random_regular_graph(3, 8, seed=1).edges]


def bare_qaoa(steps: int = QAOA_STEPS) -> float:
    """Seconds for qaoa_maxcut's four starts, one after another in plain PennyLane."""
    from qflow.algorithms.qaoa import ramp

    edges, n = qaoa_edges(), 8
    cost_h = qml.sum(*(0.5 * (qml.Z(u) @ qml.Z(v)) - 0.5 * qml.Identity(u) for u, v in edges))
    mixer_h = qml.sum(*(qml.X(w) for w in range(n)))
    rng = np.random.default_rng(QAOA_SEED)
    starts = [ramp(1)] + [
        np.concatenate([rng.uniform(0, np.pi, 1), rng.uniform(0, np.pi / 2, 1)])
        for _ in range(QAOA_RESTARTS - 1)
    ]
    backend = get_backend("lightning.qubit")

    def circuit(params):
        for w in range(n):
            qml.Hadamard(w)
        qml.qaoa.cost_layer(params[0], cost_h)
        qml.qaoa.mixer_layer(params[1], mixer_h)
        return qml.expval(cost_h)

    t0 = time.perf_counter()
    for start in starts:
        qnode = qml.QNode(circuit, backend.make_device(n), diff_method=backend.diff_method)
        opt, params = qml.AdamOptimizer(0.05), pnp.array(start, requires_grad=True)
        for _ in range(steps):
            params, _ = opt.step_and_cost(qnode, params)
    return time.perf_counter() - t0


_BARE_QAOA_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from latency import bare_qaoa
bare_qaoa(5)  # imports and first compilations, as the warm qflow run has had them
for _ in range({times}):
    print(bare_qaoa())
"""


def bare_qaoa_runs(times: int) -> list[float]:
    """:func:`bare_qaoa` ``times`` over, in a clean process (no Ray beside it)."""
    import subprocess

    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _BARE_QAOA_SCRIPT.format(here=str(Path(__file__).resolve().parent), times=times),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(line) for line in run.stdout.strip().splitlines()[-times:]]


def qflow_qaoa() -> float:
    """Seconds for qaoa_maxcut with four restarts, from the call to its result."""
    from qflow.algorithms import qaoa_maxcut

    t0 = time.perf_counter()
    qaoa_maxcut(
        qaoa_edges(),
        p=1,
        restarts=QAOA_RESTARTS,
        seed=QAOA_SEED,
        steps=QAOA_STEPS,
        backend="lightning.qubit",
    )
    return time.perf_counter() - t0


def startup(backend, cold: bool) -> float:
    """Seconds from minimize() to the result of a one-step loop."""
    from qflow import _loop_pool

    circuit, wires, n = h2_circuit()
    if cold:
        _loop_pool.call_pool("clear")
    else:  # a loop just ran: its actor waits in the pool
        minimize(
            circuit, np.zeros(n), wires=wires, backend=backend, steps=1, pack=1, progress=False
        )
    t0 = time.perf_counter()
    minimize(circuit, np.zeros(n), wires=wires, backend=backend, steps=1, pack=1, progress=False)
    return time.perf_counter() - t0


def summary(runs: list[float]) -> dict:
    return {
        "median": float(np.median(runs)),
        "min": float(min(runs)),
        "max": float(max(runs)),
        "runs": [float(r) for r in runs],
    }


@ray.remote(num_cpus=1)
def _one_step(params, backend):
    circuit, wires, _ = h2_circuit()
    qnode = qml.QNode(circuit, backend.make_device(wires), diff_method=backend.diff_method)
    new, _ = qml.GradientDescentOptimizer(0.4).step_and_cost(
        qnode, pnp.array(params, requires_grad=True)
    )
    return np.asarray(new)


def task_per_iter(backend, iters: int) -> float:
    params = np.zeros(h2_circuit()[2])
    params = ray.get(_one_step.remote(params, backend))  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        params = ray.get(_one_step.remote(params, backend))
    return (time.perf_counter() - t0) / iters


@ray.remote(num_cpus=1)
class _Stepper:
    def __init__(self, backend):
        circuit, wires, _ = h2_circuit()
        self.qnode = qml.QNode(circuit, backend.make_device(wires), diff_method=backend.diff_method)
        self.opt = qml.GradientDescentOptimizer(0.4)

    def step(self, params):
        new, _ = self.opt.step_and_cost(self.qnode, pnp.array(params, requires_grad=True))
        return np.asarray(new)


def actor_per_iter(backend, iters: int) -> float:
    actor = _Stepper.remote(backend)
    params = ray.get(actor.step.remote(np.zeros(h2_circuit()[2])))  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        params = ray.get(actor.step.remote(params))
    ray.kill(actor)
    return (time.perf_counter() - t0) / iters


def packed(backend, iters: int, k: int) -> float:
    """Steady-state seconds per iteration, measured from the end of chunk 2 to the end.

    Chunk 1 starts the actor; chunk 2 may start a Ray worker on the actor's node. Both
    are one-off costs per loop, reported apart from the per-iteration figure.
    """
    circuit, wires, n = h2_circuit()
    steps = 2 * k + max(iters, k)
    res = minimize(
        circuit, np.zeros(n), wires=wires, backend=backend, steps=steps, pack=k, progress=False
    )
    nodes = [
        nd
        for nd in qflow.get_result(res.dispatch_id).get_all_node_results()
        if nd["node_name"] == "run_chunk"
    ]
    span = (nodes[-1]["end_time"] - nodes[1]["end_time"]).total_seconds()
    return span / (res.iterations - 2 * k)


def client_driven(backend, iters: int) -> float:
    return bare_loop(backend, iters)  # in the driver: off the gateway node, pays the RTT


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer iterations; under a minute")
    p.add_argument(
        "--repeats", type=int, default=None, help="runs per figure (default 5, 3 with --quick)"
    )
    p.add_argument("--out-dir", default="benchmarks/results")
    args = p.parse_args(argv)
    iters = 20 if args.quick else 100
    repeats = args.repeats or (3 if args.quick else 5)
    ks = (1, 10) if args.quick else (1, 10, 100)
    rtts = (0, 10, 50) if not args.quick else (0, 50)

    bare = best_bare_loop(iters, repeats)
    base = bare["s_per_iter"]
    # Ray set as in the clusters qflow starts itself (idle workers kept warm).
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "_system_config": RAY_SYSTEM_CONFIG},
    )
    cluster.add_node(num_cpus=2, resources={SIMULATED_QPU_RESOURCE: 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    out: dict = {
        "iterations": iters,
        "repeats": repeats,
        "bare": bare,
        "part1": {},
        "startup": {},
        "part2": {},
        "part3": {},
    }
    try:
        lightning = get_backend("lightning.qubit")
        part1 = {
            "task/iter": [task_per_iter(lightning, max(5, iters // 4)) for _ in range(repeats)],
            "actor/iter": [actor_per_iter(lightning, iters) for _ in range(repeats)],
        }
        for k in ks:
            part1[f"packed K={k}"] = []
            for _ in range(repeats):  # the baseline measured beside each, as the box drifts
                part1[f"packed K={k}"].append(packed(lightning, iters, k))
                bare["runs"][bare["best"]] += bare_run(iters, bare["best"])
            print(f"  measured packed K={k}", file=sys.stderr)
        base = bare["s_per_iter"] = float(np.median(bare["runs"][bare["best"]]))
        out["part1"] = {
            name: {**summary(runs), "ratio_to_bare": float(np.median(runs)) / base}
            for name, runs in part1.items()
        }
        out["per_chunk_overhead_s"] = out["part1"]["packed K=1"]["median"] - base
        out["startup"] = {
            "cold": summary([startup(lightning, True) for _ in range(repeats)]),
            "warm": summary([startup(lightning, False) for _ in range(repeats)]),
        }
        for rtt in rtts:
            qpu = get_backend("simulated.qpu", inner="lightning.qubit", round_trip_ms=rtt)
            n_client = max(5, iters // (5 if rtt else 1))
            client = client_driven(qpu, n_client)
            colocated = packed(qpu, iters, max(ks))
            out["part2"][f"{rtt} ms"] = {
                "client_s_per_iter": client,
                "colocated_s_per_iter": colocated,
                "speedup": client / colocated,
            }
            print(f"  measured rtt={rtt}", file=sys.stderr)
        # Warm: twice, since the first run may start fewer actors than four loops at
        # once need (a loop that ends early hands its actor to one still waiting).
        qflow_qaoa()
        qflow_qaoa()
        ours = [qflow_qaoa() for _ in range(repeats)]
        plain = bare_qaoa_runs(repeats)
        out["part3"] = {
            "qflow_s": summary(ours),
            "pennylane_s": summary(plain),
            "ratio": float(np.median(ours)) / float(np.median(plain)),
        }
        print("  measured qaoa", file=sys.stderr)
    finally:
        ray.shutdown()
        cluster.shutdown()

    below = [k for k, v in out["part1"].items() if v["median"] < base]
    kept = bare["runs"][bare["best"]]
    settings = ", ".join(
        f"{k} {np.median(v[:repeats]) * 1000:.2f}" for k, v in bare["runs"].items()
    )
    lines = [
        f"bare loop: {base * 1000:.2f} ms/iteration, median of {len(kept)} runs "
        f"({min(kept) * 1000:.2f}-{max(kept) * 1000:.2f}; setting {bare['best']}, the "
        f"faster of {settings})",
        "",
        "| loop | ms / iteration, median (min-max) | × bare |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['median'] * 1000:.2f} ({v['min'] * 1000:.2f}-{v['max'] * 1000:.2f})"
        f" | {v['ratio_to_bare']:.2f} |"
        for k, v in out["part1"].items()
    ]
    out["k1_to_actor_call"] = (
        out["part1"]["packed K=1"]["median"] / out["part1"]["actor/iter"]["median"]
    )
    lines += [
        "",
        f"per-chunk overhead (packed K=1 minus bare): "
        f"{out['per_chunk_overhead_s'] * 1000:.2f} ms; packed K=1 is "
        f"{out['k1_to_actor_call']:.2f}x a bare Ray actor call per iteration",
        "",
        "| loop start-up (minimize, 1 step) | s, median (min-max) |",
        "|---|---:|",
    ]
    lines += [
        f"| {k} actor | {v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f}) |"
        for k, v in out["startup"].items()
    ]
    lines += [
        "",
        "| round trip | client-driven ms/iter | co-located packed ms/iter | speed-up |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['client_s_per_iter'] * 1000:.2f} | "
        f"{v['colocated_s_per_iter'] * 1000:.2f} | {v['speedup']:.1f}× |"
        for k, v in out["part2"].items()
    ]
    q = out["part3"]
    lines += [
        "",
        "| qaoa_maxcut, 8 nodes, p=1, restarts=4, warm | s, median (min-max) |",
        "|---|---:|",
        f"| qflow | {q['qflow_s']['median']:.2f} ({q['qflow_s']['min']:.2f}-"
        f"{q['qflow_s']['max']:.2f}) |",
        f"| the four starts in plain PennyLane, one after another | "
        f"{q['pennylane_s']['median']:.2f} ({q['pennylane_s']['min']:.2f}-"
        f"{q['pennylane_s']['max']:.2f}) |",
        f"| ratio | {q['ratio']:.2f}× |",
    ]
    if below:
        lines += [
            "",
            f"WARNING: {below} measured below the bare baseline: it is not the "
            "best bare loop on this machine.",
        ]
    table = "\n".join(lines)
    print(table)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latency.json").write_text(json.dumps(out, indent=2))
    (out_dir / "latency.md").write_text(table + "\n")
    _plot(out, out_dir / "latency.png")
    print(f"wrote {out_dir}/latency.json, latency.md, latency.png")
    return out


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["bare", *out["part1"]]
    medians = [out["bare"]["s_per_iter"] * 1000] + [
        out["part1"][n]["median"] * 1000 for n in out["part1"]
    ]
    kept = out["bare"]["runs"][out["bare"]["best"]]
    base = out["bare"]["s_per_iter"]
    lows = [(base - min(kept)) * 1000] + [
        (out["part1"][n]["median"] - out["part1"][n]["min"]) * 1000 for n in out["part1"]
    ]
    highs = [(max(kept) - base) * 1000] + [
        (out["part1"][n]["max"] - out["part1"][n]["median"]) * 1000 for n in out["part1"]
    ]
    a.bar(names, medians, yerr=[lows, highs], capsize=3)
    a.set_ylabel("ms per iteration")
    a.set_yscale("log")
    a.set_title("VQE H2, lightning.qubit")
    a.tick_params(axis="x", rotation=30)
    rtts = list(out["part2"])
    x = np.arange(len(rtts))
    b.bar(
        x - 0.2,
        [out["part2"][r]["client_s_per_iter"] * 1000 for r in rtts],
        0.4,
        label="client-driven",
    )
    b.bar(
        x + 0.2,
        [out["part2"][r]["colocated_s_per_iter"] * 1000 for r in rtts],
        0.4,
        label="packed, co-located",
    )
    b.set_xticks(x, rtts)
    b.set_xlabel("simulated QPU round trip")
    b.set_ylabel("ms per iteration")
    b.set_yscale("log")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
