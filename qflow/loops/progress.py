"""Progress of a running variational loop: a terminal bar and a per-step callback.

The loop's chunk electrons log each step's cost with :func:`qflow.log_metric`; this
module reads those points from the results store while the dispatch runs (any process
could), so following a loop costs the loop nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from qflow.exceptions import QflowInputError
from qflow.runtime.process import current

__all__ = ["check_callback", "follow", "wants_bar"]

#: Seconds between reads of the store.
POLL_S = 0.2


def check_callback(callback: Any) -> Callable[[int, float], Any] | None:
    """``callback`` if callable (or None), else a QflowInputError saying what it takes."""
    if callback is not None and not callable(callback):
        raise QflowInputError(
            f"callback is a function callback(step, cost) called after "
            f"each iteration; got {type(callback).__name__} {callback!r}."
        )
    return callback


def wants_bar(progress: bool | None) -> bool:
    """Whether to draw a bar: as asked, or by default when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


def follow(
    dispatch_id: str,
    steps: int,
    *,
    metric: str = "cost",
    callback: Callable[[int, float], Any] | None = None,
    progress: bool | None = None,
    label: str = "loop",
) -> None:
    """Wait for the dispatch to end, calling ``callback(step, cost)`` once per logged
    step in order and drawing a bar of ``steps`` on stderr.

    Args:
        progress: draw the bar; ``None`` draws it when stderr is a terminal.

    If the callback raises, the dispatch is cancelled and the error propagates.
    """
    import qflow
    from qflow.remote.store import chosen_store

    bar = _bar(steps, label) if wants_bar(progress) else None
    store = chosen_store() or current().store
    seen = 0
    try:
        while True:
            final = qflow.get_result(dispatch_id, status_only=True)["status"].is_final
            points = [p for p in store.get_metrics([dispatch_id])[dispatch_id] if p.name == metric]
            for point in points[seen:]:
                if callback is not None:
                    try:
                        callback(int(point.step or 0), float(point.value))
                    except BaseException:
                        qflow.cancel(dispatch_id)
                        raise
                if bar is not None:
                    bar.update(1, point.value)
            seen = max(seen, len(points))
            if final:
                return
            time.sleep(POLL_S)
    finally:
        if bar is not None:
            bar.close()


class _TextBar:
    """A one-line bar for terminals without tqdm."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.n, self.t0 = total, label, 0, time.perf_counter()

    def update(self, n: int, cost: float) -> None:
        self.n += n
        width = 30
        filled = int(width * min(self.n, self.total) / max(self.total, 1))
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.n}/{self.total} cost {cost:.6f} "
            f"{time.perf_counter() - self.t0:.0f}s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


class _TqdmBar:
    def __init__(self, total: int, label: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr)

    def update(self, n: int, cost: float) -> None:
        self._bar.set_postfix(cost=f"{cost:.6f}", refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _bar(total: int, label: str) -> _TextBar | _TqdmBar:
    try:
        return _TqdmBar(total, label)
    except ImportError:
        return _TextBar(total, label)
