"""Metrics logged from inside electrons, for the record and the UI's live charts.

Example:
    >>> import qflow
    >>> @qflow.electron
    ... def train(steps):
    ...     for i in range(steps):
    ...         qflow.log_metric("loss", 1.0 / (i + 1), step=i)
    ...     return "done"
    >>> @qflow.lattice
    ... def flow():
    ...     return train(3)
    >>> res = qflow.dispatch_sync(flow)()
    >>> [round(p.value, 3) for p in res.get_metrics()["loss"]]
    [1.0, 0.5, 0.333]
"""

from __future__ import annotations

import contextvars
import json
import math
import numbers
import time

from qflow.exceptions import QflowInputError
from qflow.store.base import MetricPoint

__all__ = ["log_metric"]

_CURRENT: contextvars.ContextVar[tuple[int, list[MetricPoint]] | None] = contextvars.ContextVar(
    "qflow_metrics", default=None
)


class collecting:
    """Gather what :func:`log_metric` records while the node ``node_id`` runs.

    A class rather than a generator: it is entered once per task, and a generator-based
    context manager costs twice as much.
    """

    __slots__ = ("_node_id", "_points", "_token")

    def __init__(self, node_id: int) -> None:
        self._node_id = node_id
        self._points: list[MetricPoint] = []

    def __enter__(self) -> list[MetricPoint]:
        self._token = _CURRENT.set((self._node_id, self._points))
        return self._points

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)


def _finite(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise QflowInputError(
            f"{what} takes a finite real number; got {type(value).__name__} "
            f"{value!r}. Pass float(x) for a numpy scalar or a 0-d array."
        )
    return float(value)


def log_metric(
    name: str,
    value: float,
    step: float | None = None,
    *,
    error: float | None = None,
    unit: str | None = None,
    x: str | None = None,
    y: str | None = None,
    chart: str | None = None,
    reference: bool = False,
) -> None:
    """Record ``value`` of metric ``name`` (at ``step``) for the electron running now.

    The values are stored with the node when it finishes and charted live by
    ``qflow ui``. Like Braket Hybrid Jobs' ``log_metric``, but for any electron.

    Args:
        name: the metric, e.g. ``"energy"``.
        value: a real number (NaN and infinities are refused: they cannot be charted).
        step: the iteration or x value; by default the count of earlier values of
            ``name`` logged by this electron.
        error: the value's standard error, drawn as an error bar.
        unit: the value's unit, e.g. ``"Ha"``, shown on the chart's axis.
        x: what ``step`` is, with its unit, e.g. ``"R (Å)"`` (default "step").
        y: what the values are, for the y axis (default: the chart's name).
        chart: the chart to draw it on, to share one with other metrics (default: a
            chart of its own, called ``name``).
        reference: a reference value (an exact energy), drawn as a dashed line across
            the chart at its last value.

    Raises:
        QflowInputError: outside an electron, or for a value that is not a finite
            real number.
    """
    current = _CURRENT.get()
    if current is None:
        raise QflowInputError(
            f"log_metric({name!r}, ...) was called outside an electron. It records a "
            "metric for the electron that calls it: call it inside an @qflow.electron "
            "function."
        )
    if not isinstance(name, str) or not name:
        raise QflowInputError(f"A metric name is a non-empty string; got {name!r}.")
    number = _finite(f"Metric {name!r}", value)
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Real)):
        raise QflowInputError(f"The step of metric {name!r} is a number or None; got {step!r}.")
    if error is not None:
        error = _finite(f"The error of metric {name!r}", error)
    texts = {"unit": unit, "x": x, "y": y, "chart": chart}
    for key, text in texts.items():
        if text is not None and not isinstance(text, str):
            raise QflowInputError(f"{key}= of metric {name!r} is text or None; got {text!r}.")
    meta: dict[str, str | bool] = {k: v for k, v in texts.items() if v}
    if reference:
        meta["reference"] = True
    node_id, points = current
    if step is None:
        step = sum(p.name == name for p in points)
    points.append(
        MetricPoint(
            node_id=node_id,
            name=name,
            step=float(step),
            value=number,
            time=time.time(),
            error=error,
            meta=json.dumps(meta, ensure_ascii=False) if meta else None,
        )
    )
