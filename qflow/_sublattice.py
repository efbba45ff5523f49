"""A sublattice node: its lattice is built and run where the node runs."""

from __future__ import annotations

from typing import Any

import cloudpickle

from qflow._dispatcher import Dispatcher, record_new_dispatch
from qflow._status import Status
from qflow._task import PickledFunction, TaskCall
from qflow.exceptions import DispatchFailedError
from qflow.store.sqlite import SQLiteStore


def run_sublattice(call: TaskCall, args: list[Any], kwargs: dict[str, Any],
                   meta: dict[str, Any]) -> Any:
    """Run ``call.fn`` (a Lattice) as a child dispatch; put its records in ``meta``.

    The child's electrons are Ray tasks of their own, so they run in parallel where
    independent. Its rows travel back in ``meta["sublattice"]`` for the parent's store.
    """
    lattice = call.fn.load() if isinstance(call.fn, PickledFunction) else call.fn
    child_id = f"{call.dispatch_id}/{call.node_id}"
    store = SQLiteStore(":memory:")
    graph = lattice.build_graph(*args, **kwargs)
    record_new_dispatch(store, child_id, graph,
                        inputs=cloudpickle.dumps({"args": tuple(args), "kwargs": kwargs}),
                        graph_blob=None)
    status = Dispatcher(store, child_id, graph).run()
    meta["sublattice"] = store.export(child_id)
    row = store.get_dispatch(child_id) or {}
    if status != Status.COMPLETED:
        raise DispatchFailedError(
            f"Sublattice {call.label} ended {status}:\n{row.get('error') or ''}".rstrip())
    return cloudpickle.loads(row["result"])
