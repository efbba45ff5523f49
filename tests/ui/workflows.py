"""Electrons the UI tests share (importable by Ray workers as ``tests.ui.workflows``)."""

import qflow


@qflow.electron
def point(x):
    """Logs one point of a sweep's energy curve (a parabola with its minimum at 1.5,
    with an error bar) and its exact value, on one chart against R."""
    chart = {"unit": "Ha", "x": "R (Å)", "chart": "energy"}
    qflow.log_metric("energy", (x - 1.5) ** 2 - 1.0, step=x, error=0.01, **chart)
    qflow.log_metric("exact energy", (x - 1.5) ** 2 - 1.002, step=x, **chart)
    return x


@qflow.lattice
def one_point(x):
    return point(x)
