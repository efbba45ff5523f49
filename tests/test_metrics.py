"""qflow.log_metric: recorded with the node, also when it fails, and refused clearly."""

import json
import math

import numpy as np
import pytest

import qflow
from qflow.exceptions import QflowInputError


@qflow.electron
def logs(n):
    for i in range(n):
        qflow.log_metric("loss", 1.0 / (i + 1))
    qflow.log_metric("lr", np.float64(0.1), step=7)
    return n


@qflow.electron
def logs_then_fails():
    qflow.log_metric("progress", 0.5)
    raise RuntimeError("halfway")


@qflow.electron
def bad_value(value):
    qflow.log_metric("x", value)


@qflow.lattice
def flow():
    return logs(3), logs(2)


@qflow.lattice
def failing():
    return logs_then_fails()


@qflow.lattice
def nested():
    return qflow.electron(flow)()


def test_metrics_are_stored_per_node_in_order():
    res = qflow.dispatch_sync(flow)()
    metrics = res.get_metrics()
    assert sorted(metrics) == ["loss", "lr"]
    by_node = {}
    for p in metrics["loss"]:
        by_node.setdefault(p.node_id, []).append((p.step, p.value))
    assert by_node == {
        0: [(0.0, 1.0), (1.0, 0.5), (2.0, 1 / 3)],
        2: [(0.0, 1.0), (1.0, 0.5)],
    }  # node 1: the literal 3
    assert [(p.step, p.value) for p in metrics["lr"]] == [(7.0, 0.1), (7.0, 0.1)]


def test_a_failed_node_keeps_what_it_logged():
    res = qflow.dispatch_sync(failing)()
    assert res.status == "FAILED"
    assert [p.value for p in res.get_metrics()["progress"]] == [0.5]


def test_a_sublattices_metrics_travel_with_it():
    res = qflow.dispatch_sync(nested)()
    child = res.get_node_result(0)["sublattice_result"]
    assert len(child.get_metrics()["loss"]) == 5


@pytest.mark.parametrize("value", [math.nan, math.inf, "1.0", None, True, np.array([1.0])])
def test_bad_values_fail_the_node_with_the_reason(value):
    @qflow.lattice
    def one():
        return bad_value(value)

    res = qflow.dispatch_sync(one)()
    assert res.status == "FAILED"
    assert "finite real number" in res.error


def test_outside_an_electron_is_an_error():
    with pytest.raises(QflowInputError, match="inside an @qflow.electron"):
        qflow.log_metric("x", 1.0)


def test_chart_settings_are_checked_before_anything_is_recorded():
    """error=, unit= and the other chart settings are refused clearly when wrong."""
    from qflow.core.metrics import collecting, log_metric

    with collecting(0) as points:
        with pytest.raises(QflowInputError, match="The error of metric 'e' takes a finite"):
            log_metric("e", 1.0, error=float("nan"))
        with pytest.raises(QflowInputError, match="unit= of metric 'e' is text or None"):
            log_metric("e", 1.0, unit=3)
        log_metric("e", 1.0, step=2, error=0.1, unit="Ha", x="R (Å)", chart="E", reference=True)
    assert len(points) == 1
    assert points[0].error == 0.1
    assert json.loads(points[0].meta) == {
        "unit": "Ha",
        "x": "R (Å)",
        "chart": "E",
        "reference": True,
    }
