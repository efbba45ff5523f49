"""Loop optimizers beside PennyLane's: a SciPy method, and how any optimizer is described
in a loop's recorded inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ScipyOptimizer", "describe_optimizer"]


class ScipyOptimizer:
    """A ``scipy.optimize.minimize`` method as a loop optimizer: each chunk of ``pack``
    steps is one SciPy run with ``maxiter=pack``, warm-started from the last params.

    Args:
        method: e.g. ``"COBYLA"``, ``"Nelder-Mead"`` (gradient-free) or ``"BFGS"``.
        options: further SciPy options.
    """

    def __init__(self, method: str = "COBYLA", **options: Any) -> None:
        self.method, self.options = method, options

    def run_chunk(
        self, qnode: Any, params: Any, k: int, tol: float | None
    ) -> tuple[np.ndarray, list[float], bool]:
        from scipy.optimize import minimize as scipy_minimize

        costs: list[float] = []

        def record(xk: np.ndarray) -> None:  # one entry per SciPy iteration
            costs.append(float(qnode(xk)))

        res = scipy_minimize(
            lambda x: float(qnode(x)),
            np.asarray(params, float),
            method=self.method,
            tol=tol,
            callback=record,
            options={**self.options, "maxiter": k},
        )
        costs = costs[:k] or [float(res.fun)]
        return np.asarray(res.x), costs, bool(res.success and tol is not None and len(costs) < k)


def describe_optimizer(optimizer: Any) -> dict[str, Any]:
    """An optimizer's class and its plain settings (step size, method...)."""
    settings = (
        {
            k: v
            for k, v in vars(optimizer).items()
            if not k.startswith("_") and isinstance(v, int | float | str | bool | type(None))
        }
        if hasattr(optimizer, "__dict__")
        else {}
    )
    if isinstance(optimizer, ScipyOptimizer):
        settings = {"method": optimizer.method, **optimizer.options}
    kind = type(optimizer)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", **settings}
