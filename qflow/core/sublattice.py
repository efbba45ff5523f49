"""A sublattice node: a plain callable that runs its lattice as a child dispatch.

The dispatcher wraps a sublattice's lattice in :class:`SublatticeCall` when it
makes the node's task, handing it the function that runs the child dispatch, so the
worker side only calls a function; the child's records travel back in the
:class:`~qflow.core.task.SublatticeOutput` it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qflow.core.task import SublatticeOutput


class SublatticeCall:
    """Calling it builds ``lattice``'s graph with the arguments and runs it, as dispatch
    ``<parent>/<node>``, on this worker's Ray (the child's electrons are Ray tasks of
    their own, so independent ones run in parallel)."""

    def __init__(
        self,
        lattice: Any,
        child_id: str,
        label: str,
        runner: Callable[..., SublatticeOutput],
        chain: tuple[str, ...] = (),
        max_depth: int | None = None,
    ) -> None:
        self.lattice, self.child_id, self.label = lattice, child_id, label
        #: Runs the child dispatch: handed down by the dispatcher, so this module never
        #: imports it (it travels to the worker by reference, as a function).
        self.runner = runner
        #: The labels of the sublattice nodes from the top dispatch down to this one.
        self.chain = (*chain, label)
        self.max_depth = max_depth

    def __call__(self, *args: Any, **kwargs: Any) -> SublatticeOutput:
        return self.runner(self, *args, **kwargs)
