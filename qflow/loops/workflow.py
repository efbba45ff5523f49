"""A variational loop as a workflow: one chunk electron per ``pack`` steps, run on the
loop's warm actor, and the lattices that chain them (one loop, or several at once)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import ray

from qflow.core.metrics import log_metric
from qflow.core.tracebacks import remote_cause
from qflow.electron import Electron, electron
from qflow.exceptions import QflowConfigError
from qflow.lattice import lattice, named
from qflow.loops import pool as loop_pool
from qflow.loops import warm as warm
from qflow.loops.actor import LoopActor
from qflow.loops.result import LoopSummary
from qflow.loops.spec import ChunkState, LoopSpec
from qflow.secrets.grant import SecretsGrant, current_grant

__all__ = ["close_loop", "parallel_loops", "run_chunk", "stop_actor", "variational_loop"]


def _actor_name(loop_id: str) -> str:
    """The name a loop's actor handle is cached under in each process."""
    return f"qflow-loop-{loop_id}"


def _start_actor(spec: LoopSpec, grant: SecretsGrant | None = None) -> Any:
    """An actor for the loop, from the warm pool or new, with the loop's spec loaded."""
    bundle = spec.bundle()
    for attempt in range(3):
        name = loop_pool.call_pool(
            "acquire",
            spec.loop_id,
            loop_pool.bundle_key(bundle),
            bundle,
            LoopActor,
            f"The variational loop's actor for backend {spec.backend!r}",
        )
        try:
            actor = ray.get_actor(name, namespace=warm.NAMESPACE)
            break
        except ValueError:  # it died while idle in the pool: the pool forgets it
            loop_pool.call_pool("discard", spec.loop_id)
            if attempt == 2:
                raise
    try:
        ray.get(actor.load.remote(spec, grant))
    except ray.exceptions.RayTaskError as exc:  # the backend could not build its device
        loop_pool.call_pool("discard", spec.loop_id)
        raise remote_cause(exc) from None
    return actor


def stop_actor(loop_id: str, keep_s: float = 0.0) -> None:
    """End the loop's hold on its actor: back to the pool for ``keep_s`` seconds, or
    stopped now (always after a failure)."""
    warm.forget(_actor_name(loop_id))
    if keep_s > 0:
        loop_pool.call_pool("release", loop_id, keep_s)
    else:
        loop_pool.call_pool("discard", loop_id)


def _check_spec(spec: Any) -> LoopSpec:
    if not isinstance(spec, LoopSpec):  # e.g. a loop stored by an earlier qflow
        raise QflowConfigError(
            f"A loop chunk takes a LoopSpec (from qflow.loops.spec.prepare); got "
            f"{type(spec).__name__}. Loops dispatched by a qflow older than its typed spec "
            "cannot resume: run them again with qflow.variational.minimize."
        )
    return spec


@electron(num_cpus=0, executor="loop")
def run_chunk(
    spec: LoopSpec, state: dict[str, Any], k: int, last: bool, restarted: bool = False
) -> dict[str, Any]:
    """Run ``k`` optimizer steps on the loop's actor, starting one if needed.

    The loop executor (:mod:`qflow.loops.executor`) runs this on the loop's actor
    itself once one serves the loop, and as a plain task before that, or with
    ``restarted`` after the actor died under an earlier attempt.
    """
    spec = _check_spec(spec)
    if state["converged"]:
        return ChunkState({**state, "costs": [], "seconds": 0.0})
    here = LoopActor.in_this_process
    if here is not None:  # called on an actor by the loop executor
        out = here.run(spec.loop_id, state, k, last)
        _log_costs(spec, out["costs"], state["step"])
        return out
    sent = {"state": state}

    def on_death() -> None:
        # Resume from this chunk's input: the last finished chunk's params.
        stop_actor(spec.loop_id)
        sent["state"] = ChunkState(sent["state"], restarts=sent["state"]["restarts"] + 1)

    if restarted:  # the actor died under an earlier attempt of this chunk
        on_death()

    grant = current_grant()  # the chunk's secrets: the actor fetches them itself
    try:
        out = warm.call(
            _actor_name(spec.loop_id),
            lambda: _start_actor(spec, grant),
            lambda actor: actor.run.remote(spec.loop_id, sent["state"], k, last, grant),
            on_death=on_death,
        )
    except BaseException:
        stop_actor(spec.loop_id)
        raise
    _log_costs(spec, out["costs"], sent["state"]["step"])
    return cast(dict[str, Any], out)


def _convergence_chart(spec: LoopSpec) -> dict[str, Any]:
    """How a loop's costs are charted: on "energy convergence", in Ha, for a VQE (its
    ``about``); on the cost's own chart otherwise."""
    about = spec.inputs.get("about") or {}
    quantity = about.get("quantity")
    if not quantity:
        return {"chart": "cost"}
    return {"chart": f"{quantity} convergence", "y": quantity, "unit": about.get("unit")}


def _log_costs(spec: LoopSpec, costs: list[float], first_step: int) -> None:
    chart = _convergence_chart(spec)
    for i, cost in enumerate(costs):  # charted live by `qflow ui`
        log_metric("cost", cost, step=first_step + i, **chart)


@electron(num_cpus=0)
def close_loop(spec: LoopSpec, last_state: dict[str, Any]) -> LoopSummary:
    """Hand the loop's actor back to the warm pool for the loop's ``keep_warm`` seconds
    (or stop it and free its placement group); the loop's result in one line."""
    stop_actor(spec.loop_id, spec.keep_warm)
    summary = LoopSummary(
        final_cost=last_state.get("final_cost", last_state.get("last_cost")),
        stderr=last_state.get("final_cost_stderr"),
        steps=int(last_state.get("step", 0)),
        converged=bool(last_state.get("converged")),
        about=dict(spec.inputs.get("about") or {}),
    )
    if spec.report is not None and summary.final_cost is not None:
        found = spec.report(np.asarray(last_state["params"]), float(summary.final_cost))
        summary = dataclasses.replace(summary, found=dict(found))
    # Beside the costs on their chart: the final value (with its error bar, with
    # shots) and the exact value as a line, when the loop knows it.
    chart = _convergence_chart(spec)
    if summary.final_cost is not None:
        log_metric("final", summary.final_cost, step=summary.steps, error=summary.stderr, **chart)
    exact = summary.about.get("exact")
    if exact is not None:
        log_metric("exact", float(exact), step=0, reference=True, **chart)
    return summary


@lattice
def variational_loop(spec: LoopSpec, state: dict[str, Any]) -> dict[str, Any]:
    """The loop as a workflow: one node per chunk of ``spec.pack`` iterations."""
    spec = _check_spec(spec)
    chunks = []
    sizes = spec.chunk_sizes
    chunk = run_chunk
    names = tuple(getattr(spec.backend, "secrets", ()) or ())
    if names:  # the backend's credentials, granted to each chunk where it runs
        chunk = Electron(run_chunk.fn, dataclasses.replace(run_chunk.options, secrets=names))
    for i, k in enumerate(sizes):
        state = chunk(spec, state, k, last=i == len(sizes) - 1)
        chunks.append(state)
    # The summary first: pages show the start of a result's text.
    return {"summary": close_loop(spec, state), "chunks": chunks}


variational_loop.describe_inputs = lambda spec, state: spec.describe()


@lattice
def parallel_loops(runs: Sequence[tuple[LoopSpec, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Several loops at once, one :func:`variational_loop` sublattice each (restarts),
    called "start 1", "start 2"... on pages and in legends."""
    return [
        electron(named(variational_loop, f"start {i + 1}", ()))(spec, state)
        for i, (spec, state) in enumerate(runs)
    ]


def _describe_runs(runs: Sequence[tuple[LoopSpec, dict[str, Any]]]) -> str:
    from qflow.core.text import value_text

    first = runs[0][0].describe().splitlines()
    shared = [line for line in first if not line.startswith("initial params")]
    starts = [value_text(spec.inputs.get("initial_params")) for spec, _ in runs]
    return "\n".join(
        [f"{len(runs)} loops at once, each:", *shared]
        + [f"start {i + 1}: initial params {text}" for i, text in enumerate(starts)]
    )


parallel_loops.describe_inputs = _describe_runs
