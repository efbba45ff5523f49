"""A sublattice node: a plain callable that runs its lattice as a child dispatch.

The dispatcher wraps a sublattice's lattice in :class:`SublatticeCall` when it
makes the node's task, so the worker side only calls a function; the child's
records travel back in the :class:`~qflow._task.SublatticeOutput` it returns.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

from qflow._status import Status
from qflow._task import SublatticeOutput
from qflow._text import value_text
from qflow.exceptions import DispatchFailedError


class SublatticeCall:
    """Calling it builds ``lattice``'s graph with the arguments and runs it, as dispatch
    ``<parent>/<node>``, on this worker's Ray (the child's electrons are Ray tasks of
    their own, so independent ones run in parallel)."""

    def __init__(
        self,
        lattice: Any,
        child_id: str,
        label: str,
        chain: tuple[str, ...] = (),
        max_depth: int | None = None,
    ) -> None:
        self.lattice, self.child_id, self.label = lattice, child_id, label
        #: The labels of the sublattice nodes from the top dispatch down to this one.
        self.chain = (*chain, label)
        self.max_depth = max_depth

    def __call__(self, *args: Any, **kwargs: Any) -> SublatticeOutput:
        from qflow._dispatcher import Dispatcher, record_new_dispatch
        from qflow.store.sqlite import SQLiteStore

        store = SQLiteStore(":memory:")
        graph = self.lattice.build_graph(*args, **kwargs)
        record_new_dispatch(
            store,
            self.child_id,
            graph,
            inputs=cloudpickle.dumps({"args": args, "kwargs": kwargs}),
            graph_blob=None,
            inputs_text=value_text({"args": args, "kwargs": kwargs}),
        )
        status = Dispatcher(
            store, self.child_id, graph, chain=self.chain, max_depth=self.max_depth
        ).run()
        export = store.export(self.child_id)
        row = store.get_dispatch(self.child_id) or {}
        if status != Status.COMPLETED:
            exc = DispatchFailedError(
                f"Sublattice {self.label} ended {status}:\n{row.get('error') or ''}".rstrip()
            )
            exc.__qflow_sublattice__ = export  # type: ignore[attr-defined]
            raise exc
        from qflow.result import Result

        return SublatticeOutput(Result(store, row).result, export)
