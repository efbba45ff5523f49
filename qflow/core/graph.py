"""The transport graph: nodes, the expressions that wire them, and the build context.

A lattice function runs once, with a build context active, to record a
:class:`Graph`. Electron calls become ``ELECTRON`` or ``SUBLATTICE`` nodes; what a
lattice does to their outputs (indexing, attributes, arithmetic, containers)
becomes ``OP`` nodes. ``OP`` nodes never run as tasks of their own: their
expression is compiled into the program of whichever task consumes them (see
:mod:`qflow.core.plan`), and the dispatcher evaluates it for the record.
"""

from __future__ import annotations

import contextvars
import dis
import operator
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from qflow.core.text import value_text
from qflow.exceptions import GraphBuildError

# ---------------------------------------------------------------- expressions


class Expr:
    """A value computed from node outputs and literals."""

    __slots__ = ()

    def refs(self) -> Iterator[int]:
        """Yield the ids of the nodes this expression reads."""
        return iter(())

    def evaluate(self, values: Mapping[int, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: Any

    def evaluate(self, values: Mapping[int, Any]) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class Ref(Expr):
    node_id: int

    def refs(self) -> Iterator[int]:
        yield self.node_id

    def evaluate(self, values: Mapping[int, Any]) -> Any:
        return values[self.node_id]


@dataclass(frozen=True, slots=True)
class Apply(Expr):
    """``op(*operands)`` for one of the operators in :data:`OPERATORS`."""

    op: str
    operands: tuple[Expr, ...]

    def refs(self) -> Iterator[int]:
        for operand in self.operands:
            yield from operand.refs()

    def evaluate(self, values: Mapping[int, Any]) -> Any:
        return OPERATORS[self.op](*(o.evaluate(values) for o in self.operands))


def _build_list(*items: Any) -> list:
    return list(items)


def _build_dict(*pairs: Any) -> dict:
    return dict(zip(pairs[::2], pairs[1::2]))


OPERATORS: dict[str, Callable[..., Any]] = {
    "getitem": operator.getitem,
    "getattr": getattr,
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "neg": operator.neg,
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "list": _build_list,
    "tuple": lambda *items: tuple(items),
    "set": lambda *items: set(items),
    "dict": _build_dict,
}


def has_future(obj: Any) -> bool:
    """Whether a (possibly nested) container holds a :class:`NodeFuture`."""
    if isinstance(obj, NodeFuture):
        return True
    if type(obj) in (list, tuple, set, frozenset):
        return any(has_future(item) for item in obj)
    if type(obj) is dict:
        return any(has_future(k) or has_future(v) for k, v in obj.items())
    return False


def to_expr(obj: Any) -> Expr:
    """Turn a value that may hold node futures into an expression (no new nodes)."""
    if isinstance(obj, NodeFuture):
        return Ref(obj._node_id)
    if not has_future(obj):
        return Const(obj)
    if type(obj) is dict:
        flat: list[Expr] = []
        for k, v in obj.items():
            flat += [to_expr(k), to_expr(v)]
        return Apply("dict", tuple(flat))
    kinds: dict[type, str] = {list: "list", tuple: "tuple", set: "set", frozenset: "set"}
    kind = kinds[type(obj)]
    return Apply(kind, tuple(to_expr(item) for item in obj))


# ---------------------------------------------------------------- nodes


class NodeKind(StrEnum):
    ELECTRON = "electron"
    SUBLATTICE = "sublattice"
    OP = "op"
    #: A literal argument, numbered as Covalent numbers it; never run, never a task.
    PARAMETER = "parameter"


#: Kinds the dispatcher never submits: it evaluates OP nodes and records parameters.
VIRTUAL_KINDS = frozenset({NodeKind.OP, NodeKind.PARAMETER})
#: Name of the node that stands for the lattice's return value, as in Covalent.
POSTPROCESS_NAME = ":postprocess:reconstruct"


@dataclass
class Node:
    """One vertex of the transport graph."""

    node_id: int
    name: str
    kind: NodeKind
    fn: Callable[..., Any] | None = None
    args: tuple[Expr, ...] = ()
    kwargs: dict[str, Expr] = field(default_factory=dict)
    expr: Expr | None = None
    options: Any = None
    after: tuple[int, ...] = ()
    #: The PARAMETER nodes holding this node's literal arguments (for the record and the
    #: drawing; the literals themselves travel in ``args``/``kwargs``/``expr``).
    params: tuple[int, ...] = ()

    def data_parents(self) -> list[int]:
        """Ids of the nodes this one waits for, data edges first, without repeats."""
        seen: dict[int, None] = {}
        exprs = [self.expr] if self.expr is not None else [*self.args, *self.kwargs.values()]
        for expr in exprs:
            for ref in expr.refs():
                seen[ref] = None
        for ref in self.after:
            seen[ref] = None
        return list(seen)

    def parents(self) -> list[int]:
        """Every in-edge: :meth:`data_parents`, then the parameter nodes."""
        return [*self.data_parents(), *self.params] if self.params else self.data_parents()

    @property
    def label(self) -> str:
        """The ``name(node_id)`` key Covalent uses for node outputs."""
        return f"{self.name}({self.node_id})"


@dataclass
class Graph:
    """The nodes a lattice recorded, in call order, and the expression it returned."""

    name: str
    nodes: list[Node] = field(default_factory=list)
    output: Expr = field(default_factory=lambda: Const(None))

    def add(self, **fields: Any) -> Node:
        node = Node(node_id=len(self.nodes), **fields)
        self.nodes.append(node)
        return node

    def topo_order(self) -> list[Node]:
        """Nodes with every parent before its children (``wait`` can point forward).

        Iterative, so a chain of any length is fine.
        """
        order: list[Node] = []
        state: dict[int, int] = {}  # 1: on the path, 2: placed
        for root in self.nodes:
            if state.get(root.node_id) == 2:
                continue
            stack = [(root, iter(root.parents()))]
            state[root.node_id] = 1
            while stack:
                node, parents = stack[-1]
                for parent in parents:
                    seen = state.get(parent)
                    if seen == 1:
                        raise GraphBuildError(
                            f"qflow.wait made a cycle through {self.nodes[parent].label}: a "
                            "node cannot wait for one of its own dependants. Remove that wait."
                        )
                    if seen is None:
                        state[parent] = 1
                        stack.append((self.nodes[parent], iter(self.nodes[parent].parents())))
                        break
                else:
                    stack.pop()
                    state[node.node_id] = 2
                    order.append(node)
        return order

    def describe(self) -> str:
        """The graph as indented text, one node a line with its parents (parameter nodes
        show as parents, not on lines of their own)."""
        return describe_nodes(
            self.name, ((n.node_id, n.name, str(n.kind), n.parents()) for n in self.nodes)
        )


def describe_nodes(name: str, nodes: Iterable[tuple[int, str, str, Sequence[int]]]) -> str:
    """:meth:`Graph.describe` from ``(node_id, name, kind, parents)`` rows, as a store
    holds them (so the text is made when read, not on every dispatch)."""
    rows = list(nodes)
    labels = {nid: f"{nm}({nid})" for nid, nm, _, _ in rows}
    lines = [f"lattice {name}: {len(rows)} nodes"]
    for nid, _, kind, parents in rows:
        if kind == NodeKind.PARAMETER:
            continue
        shown = ", ".join(labels.get(p, f"?({p})") for p in parents) or "-"
        lines.append(f"  {labels[nid]:<28} [{kind}] <- {shown}")
    return "\n".join(lines)


# ---------------------------------------------------------------- build context

_BUILDING: contextvars.ContextVar[Graph | None] = contextvars.ContextVar(
    "qflow_building", default=None
)
_REPLACING: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "qflow_replacing", default=types.MappingProxyType({})
)


def replacement_for(name: str) -> Any:
    """The electron ``redispatch(replace_electrons=...)`` put in place of ``name``, if any."""
    return _REPLACING.get().get(name)


def current_graph() -> Graph | None:
    """The graph being built, or None outside a lattice build."""
    return _BUILDING.get()


class building:
    """Context manager that records electron calls into ``graph``."""

    def __init__(self, graph: Graph, replace: Mapping[str, Any] | None = None) -> None:
        self.graph = graph
        self.replace = replace or {}

    def __enter__(self) -> Graph:
        self._tokens = (_BUILDING.set(self.graph), _REPLACING.set(self.replace))
        return self.graph

    def __exit__(self, *exc: object) -> None:
        _BUILDING.reset(self._tokens[0])
        _REPLACING.reset(self._tokens[1])


def add_op(name: str, expr: Expr) -> NodeFuture:
    graph = current_graph()
    if graph is None:  # only reachable if a future escaped its lattice
        raise GraphBuildError(
            f"An electron output was used outside the lattice that made it ({name}). "
            "Use outputs only inside the lattice function, or read them from "
            "qflow.get_result(...) after the dispatch."
        )
    node = graph.add(name=f":{name}:", kind=NodeKind.OP, expr=expr)
    if isinstance(expr, Apply):
        for operand in expr.operands:  # Covalent numbers each literal operand as a node
            if type(operand) is Const:
                add_param(graph, node, operand.value)
    return NodeFuture(node.node_id, length=None)


def add_param(graph: Graph, consumer: Node, value: Any) -> Node:
    """Record ``value``, a literal argument of ``consumer``, as a PARAMETER node.

    Covalent gives every literal argument a node of its own; so does qflow, so that node
    ids match. A literal list or dict is one node here, however long (Covalent makes one
    node per element, which turned a 100,000-element list into a 2.6 GB graph).
    """
    node = graph.add(
        name=":parameter:" + value_text(value)[:80], kind=NodeKind.PARAMETER, expr=Const(value)
    )
    consumer.params = (*consumer.params, node.node_id)
    return node


_COLLECTIONS: dict[type, str] = {
    list: "list",
    dict: "dict",
    tuple: "tuple",
    set: "set",
    frozenset: "set",
}


def arg_expr(graph: Graph, consumer: Node, value: Any) -> Expr:
    """The expression for one argument of ``consumer``, adding nodes in Covalent's order.

    An output is an edge; a literal becomes a PARAMETER node; a list or dict holding
    outputs becomes an ``:electron_list:``/``:electron_dict:`` OP node whose items are
    numbered the same way, depth first.
    """
    if isinstance(value, NodeFuture):
        return Ref(value._node_id)
    kind = _COLLECTIONS.get(type(value))
    if kind is None or not has_future(value):
        return cast(Expr, add_param(graph, consumer, value).expr)  # one Const for both
    node = graph.add(name=f":electron_{kind}:", kind=NodeKind.OP)
    if kind == "dict":
        flat: list[Expr] = []
        for k, v in value.items():
            flat += [to_expr(k), arg_expr(graph, node, v)]
        node.expr = Apply("dict", tuple(flat))
    else:
        node.expr = Apply(kind, tuple(arg_expr(graph, node, item) for item in value))
    return Ref(node.node_id)


def _binary(op: str, reflected: bool = False) -> Callable[[NodeFuture, Any], NodeFuture]:
    def method(self: NodeFuture, other: Any) -> NodeFuture:
        operands = (
            (to_expr(other), Ref(self._node_id))
            if reflected
            else (Ref(self._node_id), to_expr(other))
        )
        return add_op(op, Apply(op, operands))

    method.__name__ = f"__{'r' if reflected else ''}{op}__"
    return method


class NodeFuture:
    """What an electron call returns inside a lattice: a placeholder for its output.

    It supports what a lattice may do with an output it does not have yet:
    indexing, attribute access, unpacking and arithmetic, each recorded as a
    node. Decisions on its value (``if``, ``len``) need the value, so they raise.
    """

    __slots__ = ("_length", "_node_id")

    def __init__(self, node_id: int, length: int | None) -> None:
        self._node_id = node_id
        self._length = length

    def __repr__(self) -> str:
        return f"<qflow output of node {self._node_id}>"

    def __getitem__(self, key: Any) -> NodeFuture:
        return add_op("getitem", Apply("getitem", (Ref(self._node_id), to_expr(key))))

    def __getattr__(self, name: str) -> NodeFuture:
        if name.startswith("_"):
            # Protocol probes (copy, pickle, numpy) must not turn into nodes.
            raise AttributeError(name)
        return add_op("getattr", Apply("getattr", (Ref(self._node_id), Const(name))))

    def __iter__(self) -> Iterator[NodeFuture]:
        length = self._length if self._length is not None else _unpack_count(sys._getframe(1))
        if length is None:
            raise GraphBuildError(
                f"Cannot iterate over the output of node {self._node_id} while the lattice "
                "is being built: its length is not known yet. Unpack it into names "
                "(a, b = task()), index it (out[0]), or annotate the electron's return "
                "type as tuple[int, int]."
            )
        return (self[i] for i in range(length))

    def __bool__(self) -> bool:
        raise GraphBuildError(
            "An electron output has no value while the lattice is being built, so it "
            "cannot decide an `if`, `while` or `and`. Move the decision into an electron, "
            "or run a sublattice per branch."
        )

    def __len__(self) -> int:
        raise GraphBuildError(
            "len() of an electron output is not known while the lattice is being built. "
            "Compute it inside an electron, or pass the length in as a lattice argument."
        )

    def _needs_value(self, what: str, advice: str) -> GraphBuildError:
        return GraphBuildError(
            f"{what} of an electron output (node {self._node_id}) needs its value, which "
            f"does not exist while the lattice is being built. {advice}"
        )

    def __str__(self) -> str:
        raise self._needs_value(
            "str()",
            "Format it inside an electron (return f'...' from one), or return the "
            "output itself and format the result after the dispatch.",
        )

    def __format__(self, spec: str) -> str:
        raise self._needs_value(
            "An f-string or format()",
            "Format it inside an electron, or format the result after the dispatch.",
        )

    def __hash__(self) -> int:
        raise self._needs_value(
            "Hashing (a set member or dict key)",
            "Use it as a dict value or list item instead, or build the set inside an electron.",
        )

    def __int__(self) -> int:
        raise self._needs_value("int()", "Convert it inside an electron.")

    def __float__(self) -> float:
        raise self._needs_value("float()", "Convert it inside an electron.")

    def __complex__(self) -> complex:
        raise self._needs_value("complex()", "Convert it inside an electron.")

    def __index__(self) -> int:
        raise self._needs_value(
            "Using it as an index or a range bound",
            "Pass the number in as a lattice argument, or index inside an electron.",
        )

    def __contains__(self, item: Any) -> bool:
        raise self._needs_value("`in`", "Test membership inside an electron.")

    # Comparisons become nodes computed at run time; deciding on one (``if``) still raises.
    __eq__ = _binary("eq")  # type: ignore[assignment]
    __ne__ = _binary("ne")  # type: ignore[assignment]
    __lt__ = _binary("lt")
    __le__ = _binary("le")
    __gt__ = _binary("gt")
    __ge__ = _binary("ge")

    __add__ = _binary("add")
    __radd__ = _binary("add", reflected=True)
    __sub__ = _binary("sub")
    __rsub__ = _binary("sub", reflected=True)
    __mul__ = _binary("mul")
    __rmul__ = _binary("mul", reflected=True)
    __truediv__ = _binary("truediv")
    __rtruediv__ = _binary("truediv", reflected=True)
    __floordiv__ = _binary("floordiv")
    __rfloordiv__ = _binary("floordiv", reflected=True)
    __mod__ = _binary("mod")
    __rmod__ = _binary("mod", reflected=True)
    __pow__ = _binary("pow")
    __rpow__ = _binary("pow", reflected=True)

    def __neg__(self) -> NodeFuture:
        return add_op("neg", Apply("neg", (Ref(self._node_id),)))


def _unpack_count(frame: Any) -> int | None:
    """The N of an ``a, b, ... = output`` statement that is iterating us, if any."""
    for instr in dis.get_instructions(frame.f_code):
        if instr.offset == frame.f_lasti:
            return instr.arg if instr.opname == "UNPACK_SEQUENCE" else None
    return None


def return_length(fn: Callable[..., Any]) -> int | None:
    """N when ``fn`` is annotated ``-> tuple[T1, ..., TN]``, else None."""
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable forward refs: just no hint
        return None
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and Ellipsis not in args:
        return len(args)
    return None
