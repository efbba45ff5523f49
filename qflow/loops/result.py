"""What a variational loop produced, collected from its chunk outputs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["LoopResult", "LoopSummary", "collect"]


@dataclass(frozen=True)
class LoopSummary:
    """A finished loop in one line, for pages and ``qflow show``: the final cost (an
    energy, with its unit and the exact value, when the loop says what it computes).

    Example:
        >>> LoopSummary(-1.13727, None, 20, True, {"quantity": "energy", "unit": "Ha",
        ...             "exact": -1.13728})
        energy -1.137270 Ha (exact -1.137280 Ha, error +0.010 mHa, within chemical accuracy); 20 steps, converged
    """

    final_cost: float | None
    stderr: float | None
    steps: int
    converged: bool
    about: dict[str, Any] = field(default_factory=dict)
    #: What the loop found in the experiment's words (its spec's ``report``).
    found: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        about = self.about
        quantity, unit = about.get("quantity", "final cost"), about.get("unit", "")
        if self.final_cost is None:
            value = "no value"
        else:
            value = f"{self.final_cost:.6f}"
            if self.stderr is not None:
                value += f" ± {self.stderr:.6f}"
            value += f" {unit}".rstrip()
        text = f"{quantity} {value}"
        exact = about.get("exact")
        if exact is not None and self.final_cost is not None:
            error = self.final_cost - float(exact)
            text += f" (exact {float(exact):.6f} {unit}".rstrip() + ", "
            if unit == "Ha":
                accurate = abs(error) * 1e3 <= 1.6
                text += f"error {error * 1e3:+.3f} mHa, " + (
                    "within chemical accuracy)" if accurate else "outside chemical accuracy)"
                )
            else:
                text += f"error {error:+.6f})"
        text += f"; {self.steps} steps" + (", converged" if self.converged else "")
        return text + "".join(f"; {k} {v}" for k, v in self.found.items())


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
        found: what the loop's ``report`` made of its result, as its page shows it.
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
    found: dict[str, Any] = field(default_factory=dict)

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


def collect(
    chunks: list[dict[str, Any]],
    dispatch_id: str,
    seconds: float,
    summary: LoopSummary | None = None,
) -> LoopResult:
    """A :class:`LoopResult` from the chunk outputs (and summary) of
    :func:`variational_loop`."""
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
        found=dict(summary.found) if summary is not None else {},
    )
