"""Electrons the UI tests share (importable by Ray workers as ``tests.ui.workflows``)."""

import qflow


@qflow.electron
def point(x):
    """Logs one point of a sweep's energy curve: a parabola with its minimum at 1.5."""
    qflow.log_metric("energy", (x - 1.5) ** 2 - 1.0, step=x)
    return x


@qflow.lattice
def one_point(x):
    return point(x)
