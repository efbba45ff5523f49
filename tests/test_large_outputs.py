"""Large outputs (over 1 MiB) are stored once and never copied into containers of them."""

from pathlib import Path

import numpy as np
import pytest

import qflow
from qflow._task import LARGE_OUTPUT, dumps_value
from qflow.exceptions import StoreError
from qflow.store.base import DerivedOutput, loads

N = 200_000  # float64: 1.6 MB pickled, over LARGE_OUTPUT


@qflow.electron
def big(i):
    return np.full(N, float(i))


@qflow.electron
def firsts(arrays):
    return [float(a[0]) for a in arrays]


@qflow.lattice
def collect(n):
    arrays = [big(i) for i in range(n)]
    return firsts(arrays), arrays


@qflow.lattice
def index_one():
    return big(7)[3]


@qflow.lattice
def inner(n):
    return [big(i) for i in range(n)]


@qflow.lattice
def outer():
    return firsts(qflow.electron(inner)(2))


def _blob_bytes(home: str) -> int:
    return sum(p.stat().st_size for p in Path(home, "blobs").rglob("*.pkl"))


def test_a_list_of_large_outputs_is_stored_as_a_recipe(qflow_home):
    assert len(dumps_value(np.full(N, 0.0))) > LARGE_OUTPUT
    before = _blob_bytes(qflow_home)
    res = qflow.dispatch_sync(collect)(3)
    assert res.status == "COMPLETED", res.error
    first, arrays = res.result
    assert first == [0.0, 1.0, 2.0]
    assert [float(a[-1]) for a in arrays] == [0.0, 1.0, 2.0]
    lists = [
        n for n in res.get_all_node_results() if n["node_name"] == ":list:" or n["kind"] == "op"
    ]
    assert lists, res.graph_text
    value = lists[0]["output"].get_deserialized()
    assert [float(a[0]) for a in value] == [0.0, 1.0, 2.0]
    # Three arrays are on disk once each: neither the list nor the result copies them.
    written = _blob_bytes(qflow_home) - before
    assert written < 3.5 * len(dumps_value(np.full(N, 0.0))), written


def test_an_operator_on_a_large_output_is_still_evaluated():
    res = qflow.dispatch_sync(index_one)()
    assert res.status == "COMPLETED", res.error
    assert res.result == 7.0


def test_a_sublattice_returning_large_outputs_hands_over_the_values():
    res = qflow.dispatch_sync(outer)()
    assert res.status == "COMPLETED", res.error
    assert res.result == [0.0, 1.0]


def test_a_recipe_read_without_its_dispatch_says_how_to_read_it():
    from qflow._graph import Ref

    with pytest.raises(StoreError, match="get_result"):
        loads(dumps_value(DerivedOutput(Ref(0))))
    assert loads(dumps_value(DerivedOutput(Ref(0))), {0: "x"}.__getitem__) == "x"
