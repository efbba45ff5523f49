"""What a variational loop produced, collected from its chunk outputs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["LoopResult", "collect"]


@dataclass(frozen=True)
class LoopResult:
    """What a variational loop produced.

    Attributes:
        costs: the cost at each iteration's starting params, in order.
        final_cost: the cost at the final params.
        params: the final params.
        iterations: how many optimizer steps ran.
        converged: whether ``tol`` stopped the loop early.
        seconds: wall time of the dispatch.
        chunk_seconds: time spent inside the actor, per chunk.
        actor_node_ids: the Ray node each chunk ran on.
        actor_restarts: how often a dead actor was replaced.
        dispatch_id: the dispatch; its nodes are the chunks.
        final_cost_stderr: with shots, the standard error of ``final_cost``, which is
            then the mean of ``final_repeats`` independent estimates; None when exact.
        inputs: what reproduces the run: backend (shots, seed, noise), optimizer,
            gradient method, steps, pack, tol, initial params, versions.
    """

    costs: list[float]
    final_cost: float
    params: np.ndarray
    iterations: int
    converged: bool
    seconds: float
    chunk_seconds: list[float]
    actor_node_ids: list[str]
    actor_restarts: int
    dispatch_id: str
    extra: dict[str, Any] = field(default_factory=dict)
    final_cost_stderr: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values (arrays become lists).

        Example:
            >>> LoopResult([1.0, 0.5], 0.4, np.zeros(1), 2, False, 1.0, [1.0], ["n"], 0,
            ...            "d").to_dict()["final_cost"]
            0.4
        """
        from qflow.exports import jsonable

        out: dict[str, Any] = jsonable({f.name: getattr(self, f.name) for f in fields(self)})
        return out

    def to_json(self, path: str | None = None) -> str:
        """:meth:`to_dict` as JSON text, also written to ``path`` if given."""
        from qflow.exports import write_json

        return write_json(self.to_dict(), path)

    def to_dataframe(self) -> Any:
        """One row per iteration (``step``, ``cost``), with the run's scalar results and
        inputs in ``DataFrame.attrs``. Needs pandas."""
        from qflow.exports import dataframe

        summary = {k: v for k, v in self.to_dict().items() if k != "costs"}
        return dataframe({"step": list(range(len(self.costs))), "cost": self.costs}, summary)


def collect(chunks: list[dict[str, Any]], dispatch_id: str, seconds: float) -> LoopResult:
    """A :class:`LoopResult` from the chunk outputs of :func:`variational_loop`."""
    ran = [c for c in chunks if c["costs"]]
    last = ran[-1]
    return LoopResult(
        costs=[c for chunk in ran for c in chunk["costs"]],
        final_cost=last.get("final_cost", last["last_cost"]),
        params=np.asarray(last["params"]),
        iterations=last["step"],
        converged=last["converged"],
        seconds=seconds,
        chunk_seconds=[c["seconds"] for c in ran],
        actor_node_ids=[c["node_id"] for c in ran],
        actor_restarts=last["restarts"],
        dispatch_id=dispatch_id,
        final_cost_stderr=last.get("final_cost_stderr"),
        inputs=dict(last.get("inputs") or {}),
    )
