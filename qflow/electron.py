"""``@qflow.electron``: a task, a graph node inside a lattice, a plain function outside."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from qflow.core.graph import (
    NodeFuture,
    NodeKind,
    arg_expr,
    current_graph,
    replacement_for,
    return_length,
)
from qflow.core.options import ElectronOptions
from qflow.exceptions import QflowInputError

__all__ = ["Electron", "electron", "wait"]


P = ParamSpec("P")
R = TypeVar("R")


class Electron(Generic[P, R]):
    """A function (or a lattice, making a sublattice) with execution options.

    Outside a lattice it is the plain function. Inside a lattice build, calling it
    records a node and returns a placeholder for its output. Type checkers see the
    wrapped function's own signature (a placeholder stands in for its return value).
    """

    def __init__(self, fn: Callable[P, R], options: ElectronOptions) -> None:
        from qflow.lattice import Lattice

        if not callable(fn):
            raise QflowInputError(
                f"qflow.electron wraps a function or a lattice; got {type(fn).__name__} "
                f"{fn!r}. Decorate a def: @qflow.electron above `def task(...)`."
            )
        self.__name__: str = getattr(fn, "__name__", "electron")
        self.fn = fn
        self.options = options
        self.is_sublattice = isinstance(fn, Lattice)
        functools.update_wrapper(self, fn)
        self._length = None if self.is_sublattice else return_length(fn)

    def __repr__(self) -> str:
        kind = "sublattice" if self.is_sublattice else "electron"
        return f"<qflow {kind} {self.__name__}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        graph = current_graph()
        if graph is None:
            return self.fn(*args, **kwargs)
        impl = replacement_for(self.__name__) or self
        if not isinstance(impl, Electron):
            impl = Electron(impl, self.options)
        # The node first, then its arguments' nodes: Covalent's numbering.
        node = graph.add(
            name=self.__name__,
            kind=NodeKind.SUBLATTICE if impl.is_sublattice else NodeKind.ELECTRON,
            fn=impl.fn,
            options=impl.options,
        )
        node.args = tuple(arg_expr(graph, node, a) for a in args)
        node.kwargs = {k: arg_expr(graph, node, v) for k, v in kwargs.items()}
        return cast(R, NodeFuture(node.node_id, length=impl._length))

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Electrons defined in a class body behave like methods.
        return self if obj is None else functools.partial(self, obj)


@overload
def electron(_func: Callable[P, R], **options: Any) -> Electron[P, R]: ...
@overload
def electron(_func: None = None, **options: Any) -> Callable[[Callable[P, R]], Electron[P, R]]: ...


def electron(_func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Make a function an electron, or a lattice a sublattice.

    Args:
        _func: the function or lattice (when used without parentheses).
        **options: see :class:`qflow.ElectronOptions` (``executor``, ``num_cpus``,
            ``num_gpus``, ``resources``, ``max_retries``, ``retry_exceptions``,
            ``runtime_env``, ``deps_bash``, ``deps_pip``, ``call_before``, ``call_after``).

    Example:
        >>> import qflow
        >>> @qflow.electron
        ... def add(a, b):
        ...     return a + b
        >>> add(1, 2)  # outside a lattice: the plain function
        3
    """
    opts = ElectronOptions.from_kwargs(**options)
    if _func is None:
        return lambda fn: Electron(fn, opts)
    return Electron(_func, opts)


def wait(child: Any, parents: Any) -> Any:
    """Make ``child`` run after ``parents`` without passing it their outputs.

    Outside a lattice it returns ``child`` unchanged.

    Example:
        >>> import qflow
        >>> qflow.wait(3, [1, 2])
        3
    """
    graph = current_graph()
    if graph is None or not isinstance(child, NodeFuture):
        return child
    if isinstance(parents, NodeFuture) or not isinstance(parents, list | tuple):
        parents = [parents]
    node = graph.nodes[child._node_id]
    extra = [p._node_id for p in parents if isinstance(p, NodeFuture)]
    bad = [p for p in parents if not isinstance(p, NodeFuture)]
    if bad:
        raise QflowInputError(
            f"qflow.wait takes electron outputs as parents; got {bad!r}. Pass the values "
            "returned by electron calls in this lattice."
        )
    node.after = tuple(dict.fromkeys([*node.after, *extra]))
    return child


# Covalent reads its get_result wait lengths from here: ``ct.wait.EXTREME``.
from qflow.covalent import waits as _waits  # noqa: E402

wait.SHORT, wait.LONG = _waits.SHORT, _waits.LONG  # type: ignore[attr-defined]
wait.VERY_LONG, wait.EXTREME = _waits.VERY_LONG, _waits.EXTREME  # type: ignore[attr-defined]
