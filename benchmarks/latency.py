"""Per-iteration latency of a VQE loop (H2, lightning.qubit), all in one run.

Part 1, ratios to the bare in-process loop:
  bare        PennyLane optimizer + QNode in this process
  task/iter   one Ray task per iteration (rebuilds the device every time)
  actor/iter  one actor call per iteration (device kept warm in the actor)
  packed K    qflow.variational.minimize with pack=K (steady state: after the
              first chunk, which starts the actor)

Part 2, a simulated remote QPU at several round trips:
  client      the loop driven from the client, off the QPU's node: every circuit
              batch pays the round trip
  colocated   the packed loop, its actor placed on the QPU's gateway node

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

import numpy as np  # noqa: E402
import pennylane as qml  # noqa: E402
import ray  # noqa: E402
from pennylane import numpy as pnp  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import qflow  # noqa: E402
from qflow.algorithms import Molecule, build_circuit, molecular_hamiltonian  # noqa: E402
from qflow.backends import get_backend  # noqa: E402
from qflow.backends.simulated import SIMULATED_QPU_RESOURCE  # noqa: E402
from qflow.variational import minimize  # noqa: E402


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


@ray.remote(num_cpus=1)
def _one_step(params, backend):
    circuit, wires, _ = h2_circuit()
    qnode = qml.QNode(circuit, backend.make_device(wires), diff_method=backend.diff_method)
    new, _ = qml.GradientDescentOptimizer(0.4).step_and_cost(
        qnode, pnp.array(params, requires_grad=True))
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
        self.qnode = qml.QNode(circuit, backend.make_device(wires),
                               diff_method=backend.diff_method)
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
    res = minimize(circuit, np.zeros(n), wires=wires, backend=backend, steps=steps, pack=k)
    nodes = [nd for nd in qflow.get_result(res.dispatch_id).get_all_node_results()
             if nd["node_name"] == "run_chunk"]
    span = (nodes[-1]["end_time"] - nodes[1]["end_time"]).total_seconds()
    return span / (res.iterations - 2 * k)


def client_driven(backend, iters: int) -> float:
    return bare_loop(backend, iters)  # in the driver: off the gateway node, pays the RTT


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer iterations; under a minute")
    p.add_argument("--out-dir", default="benchmarks/results")
    args = p.parse_args(argv)
    iters = 20 if args.quick else 100
    ks = (1, 10) if args.quick else (1, 10, 100)
    rtts = (0, 10, 50) if not args.quick else (0, 50)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2, resources={SIMULATED_QPU_RESOURCE: 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    out: dict = {"iterations": iters, "part1": {}, "part2": {}}
    try:
        lightning = get_backend("lightning.qubit")
        base = bare_loop(lightning, iters)
        part1 = {"bare": base, "task/iter": task_per_iter(lightning, max(5, iters // 4)),
                 "actor/iter": actor_per_iter(lightning, iters)}
        for k in ks:
            part1[f"packed K={k}"] = packed(lightning, iters, k)
            print(f"  measured packed K={k}", file=sys.stderr)
        out["part1"] = {name: {"s_per_iter": t, "ratio_to_bare": t / base}
                        for name, t in part1.items()}
        for rtt in rtts:
            qpu = get_backend("simulated.qpu", inner="lightning.qubit", round_trip_ms=rtt)
            n_client = max(5, iters // (5 if rtt else 1))
            client = client_driven(qpu, n_client)
            colocated = packed(qpu, iters, max(ks))
            out["part2"][f"{rtt} ms"] = {"client_s_per_iter": client,
                                         "colocated_s_per_iter": colocated,
                                         "speedup": client / colocated}
            print(f"  measured rtt={rtt}", file=sys.stderr)
    finally:
        ray.shutdown()
        cluster.shutdown()

    lines = ["| loop | ms / iteration | × bare |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['s_per_iter'] * 1000:.2f} | {v['ratio_to_bare']:.2f} |"
              for k, v in out["part1"].items()]
    lines += ["", "| round trip | client-driven ms/iter | co-located packed ms/iter | speed-up |",
              "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['client_s_per_iter'] * 1000:.2f} | "
              f"{v['colocated_s_per_iter'] * 1000:.2f} | {v['speedup']:.1f}× |"
              for k, v in out["part2"].items()]
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
    names = list(out["part1"])
    a.bar(names, [out["part1"][n]["s_per_iter"] * 1000 for n in names])
    a.set_ylabel("ms per iteration")
    a.set_yscale("log")
    a.set_title("VQE H2, lightning.qubit")
    a.tick_params(axis="x", rotation=30)
    rtts = list(out["part2"])
    x = np.arange(len(rtts))
    b.bar(x - 0.2, [out["part2"][r]["client_s_per_iter"] * 1000 for r in rtts], 0.4,
          label="client-driven")
    b.bar(x + 0.2, [out["part2"][r]["colocated_s_per_iter"] * 1000 for r in rtts], 0.4,
          label="packed, co-located")
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
