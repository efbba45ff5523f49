"""``@qflow.lattice``: a workflow whose function, run once, records the transport graph."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from qflow.core.arguments import one_or_many
from qflow.core.graph import (
    POSTPROCESS_NAME,
    VIRTUAL_KINDS,
    Graph,
    NodeKind,
    add_param,
    building,
    has_future,
    to_expr,
)
from qflow.core.options import DEFAULT_OPTIONS, ElectronOptions
from qflow.exceptions import QflowInputError

__all__ = ["Lattice", "lattice"]


P = ParamSpec("P")
R = TypeVar("R")


class Lattice(Generic[P, R]):
    """A workflow. Calling it runs the function as plain Python; dispatching it runs
    its electrons on Ray.

    Building the graph (:meth:`build_graph`) is separate from running it
    (:func:`qflow.dispatch`).
    """

    def __init__(
        self, fn: Callable[P, R], options: ElectronOptions, tags: tuple[str, ...] = ()
    ) -> None:
        if not callable(fn):
            raise QflowInputError(
                f"qflow.lattice wraps a function; got {type(fn).__name__} {fn!r}. Decorate "
                "a def: @qflow.lattice above `def workflow(...)`."
            )
        self.__name__: str = getattr(fn, "__name__", "lattice")
        self.workflow_function = fn
        self.options = options
        self.tags = tags
        self._last_graph: Graph | None = None
        self._transport_graph: Any = None
        #: What re-dispatches this lattice (see :mod:`qflow.triggers`).
        self.triggers: tuple[Any, ...] = ()
        #: How pages show a dispatch's inputs: ``describe_inputs(*args, **kwargs)`` ->
        #: text, for inputs whose plain text says little (a loop's spec); default None,
        #: their text.
        self.describe_inputs: Callable[..., str] | None = None
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<qflow lattice {self.__name__}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.workflow_function(*args, **kwargs)

    def build_graph(
        self, *args: Any, _replace: dict[str, Any] | None = None, **kwargs: Any
    ) -> Graph:
        """Run the lattice function once with a build context and return its graph.

        ``_replace`` maps electron names to electrons (or functions) used in their place.

        Raises:
            QflowInputError: the arguments do not fit the lattice's signature.
            Exception: whatever the lattice function raised while building.
        """
        sig = inspect.signature(self.workflow_function)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise QflowInputError(
                f"Lattice {self.__name__}{sig} cannot take args={args!r}, kwargs={kwargs!r}: "
                f"{exc}. Call qflow.dispatch({self.__name__})(...) with arguments matching "
                "that signature."
            ) from exc
        bound.apply_defaults()
        graph = Graph(name=self.__name__)
        with building(graph, _replace or {}):
            returned = self.workflow_function(*bound.args, **bound.kwargs)
        graph.output = to_expr(returned)
        # The return value is a node too, last, as in Covalent (so node counts match).
        post = graph.add(name=POSTPROCESS_NAME, kind=NodeKind.OP, expr=graph.output)
        if not has_future(returned):
            add_param(graph, post, returned)
        # One merged object per distinct electron options: the tasks of a fan-out then
        # share one CallTemplate, so the function is pickled once, not once per task.
        merged: dict[int, ElectronOptions] = {}
        for node in graph.nodes:
            if node.kind not in VIRTUAL_KINDS:
                own = node.options or DEFAULT_OPTIONS
                if id(own) not in merged:
                    merged[id(own)] = own.merged_over(self.options)
                node.options = merged[id(own)]
        graph.topo_order()  # rejects wait() cycles before anything runs
        self._last_graph = graph  # Covalent's build_graph sets transport_graph: see below
        self._transport_graph = None
        return graph

    @property
    def transport_graph(self) -> Any:
        """Covalent's view of the graph the last :meth:`build_graph` made (None before);
        built when first read, so dispatching never pays for it."""
        if self._transport_graph is None and self._last_graph is not None:
            from qflow.covalent.transport import TransportGraph

            self._transport_graph = TransportGraph.from_graph(self._last_graph)
        return self._transport_graph

    @transport_graph.setter
    def transport_graph(self, value: Any) -> None:
        self._transport_graph = value

    def draw(self, *args: Any, **kwargs: Any) -> Any:
        """Build the graph for these arguments and return a :class:`qflow.covalent.drawing.Drawing`:
        its text form with ``print()``, an SVG picture in a notebook or with ``.save(
        "graph.svg")``. (Covalent's ``draw`` sends the graph to its server's UI; qflow
        needs no server. ``qflow ui`` draws dispatched graphs live.)

        Example:
            >>> import qflow
            >>> @qflow.lattice
            ... def nothing():
            ...     return 1
            >>> print(nothing.draw())  # doctest: +NORMALIZE_WHITESPACE
            lattice nothing: 2 nodes
              :postprocess:reconstruct(0)  [op] <- :parameter:1(1)
        """
        from qflow.covalent.drawing import Drawing

        return Drawing(self.build_graph(*args, **kwargs))

    def __getstate__(self) -> dict[str, Any]:
        # The last build's view is a convenience of this process, not part of the lattice.
        return {
            k: v for k, v in self.__dict__.items() if k not in ("_last_graph", "_transport_graph")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(
            {"_last_graph": None, "_transport_graph": None, "triggers": (), **state}
        )


@overload
def lattice(_func: Callable[P, R], **options: Any) -> Lattice[P, R]: ...
@overload
def lattice(_func: None = None, **options: Any) -> Callable[[Callable[P, R]], Lattice[P, R]]: ...


def lattice(_func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Make a function a workflow. Options given here apply to all its electrons.

    Args:
        _func: the workflow function (when used without parentheses).
        tags: labels recorded with each dispatch, e.g. ``["h2", "sto-3g"]``; ``qflow ui``
            finds dispatches by them. (A qflow addition: Covalent has no tags.)
        triggers: a trigger or a list of them (:mod:`qflow.triggers`): dispatching then
            registers them with the ``qflow start`` service, which dispatches the lattice
            each time one fires.
        workflow_executor: accepted for Covalent code. Covalent runs the lattice's
            post-processing there; qflow builds the return value in the dispatcher,
            from the outputs it already holds, so there is nothing to place.
        **options: electron options applied to every electron that does not set its own
            (see :func:`qflow.electron`).

    Example:
        >>> import qflow
        >>> @qflow.electron
        ... def square(x):
        ...     return x * x
        >>> @qflow.lattice
        ... def workflow(n):
        ...     return [square(i) for i in range(n)]
        >>> workflow(3)  # called directly: plain Python
        [0, 1, 4]
    """
    tags = check_tags(options.pop("tags", ()))
    options.pop("workflow_executor", None)
    triggers = _triggers(options.pop("triggers", None))
    opts = ElectronOptions.from_kwargs(**options)

    def make(fn: Callable[..., Any]) -> Lattice[..., Any]:
        lat = Lattice(fn, opts, tags)
        lat.triggers = triggers
        return lat

    return make if _func is None else make(_func)


def _triggers(value: Any) -> tuple[Any, ...]:
    from qflow.covalent.triggers import BaseTrigger

    return one_or_many(
        value,
        BaseTrigger,
        lambda bad: (
            "triggers takes qflow.triggers objects (TimeTrigger, DirTrigger, SQLiteTrigger, or "
            f"a BaseTrigger subclass); got {bad!r}."
        ),
    )


def check_tags(tags: Any) -> tuple[str, ...]:
    """``tags`` (one string or a list of them) as a tuple of non-empty strings."""
    if isinstance(tags, str):
        tags = [tags]
    try:
        out = tuple(tags)
    except TypeError:
        out = None
    if out is None or not all(isinstance(t, str) and t.strip() for t in out):
        raise QflowInputError(
            f"tags is a list of non-empty strings such as ['h2', 'sto-3g']; got {tags!r}."
        )
    return tuple(dict.fromkeys(t.strip() for t in out))


def named(flow: Lattice[..., Any], name: str, tags: Sequence[str]) -> Lattice[..., Any]:
    """``flow`` under another name and tags, for one dispatch (the lattice itself is
    shared by every loop and keeps its own)."""
    if not isinstance(name, str) or not name.strip():
        raise QflowInputError(f"name is a non-empty string; got {name!r}.")
    out = copy.copy(flow)
    out.__name__ = name.strip()
    out.tags = tuple(dict.fromkeys((*flow.tags, *check_tags(tags))))
    return out
