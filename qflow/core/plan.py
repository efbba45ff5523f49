"""Planning: what a recorded graph asks the dispatcher to run. Pure: no Ray, no store.

A graph's ``OP`` nodes (indexing, arithmetic, containers of outputs) never run as
tasks. Each real node gets a :class:`Program`: a flat list of operator steps that
rebuilds, from the outputs of the *real* nodes it reads, every argument it takes.
Programs are compiled without recursion and with each OP node expanded once per
consumer, so ``sum()`` over 10,000 outputs is a 10,000-step program, not a
10,000-deep expression (which Python could neither build, pickle nor evaluate).

The dispatcher evaluates each OP node itself, for the record, from the values of
its *direct* parents only: see :attr:`Plan.op_parents`.

Example:
    >>> import qflow
    >>> @qflow.electron
    ... def one():
    ...     return 1
    >>> @qflow.lattice
    ... def flow():
    ...     a, b = one(), one()
    ...     return one() + sum([a, b])
    >>> p = plan(flow.build_graph())
    >>> sorted(p.calls), sorted(p.op_parents)
    ([0, 1, 2], [3, 5, 6, 7])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from qflow.core.graph import OPERATORS, Apply, Const, Expr, Graph, NodeKind, Ref
from qflow.core.options import DEFAULT_OPTIONS, ElectronOptions

__all__ = ["NO_STEPS", "Operand", "Plan", "PlannedCall", "Program", "plan"]

#: ``("n", node_id)`` a real node's output, ``("c", value)`` a literal, ``("s", i)`` the
#: result of step ``i`` of the same program.
Operand = tuple[str, Any]


@dataclass(frozen=True)
class Program:
    """Operator steps over real-node outputs, run in order by :meth:`run`."""

    steps: tuple[tuple[str, tuple[Operand, ...]], ...] = ()

    def run(self, values: Mapping[int, Any]) -> list[Any]:
        """Every step's result, given the outputs of the real nodes read."""
        results: list[Any] = []
        for op, operands in self.steps:
            results.append(OPERATORS[op](*(resolve(o, values, results) for o in operands)))
        return results


#: The program of a node whose arguments need no operator steps (most of them).
NO_STEPS = Program()


def resolve(operand: Operand, values: Mapping[int, Any], results: list[Any]) -> Any:
    kind, ref = operand
    if kind == "c":
        return ref
    return values[ref] if kind == "n" else results[ref]


@dataclass(frozen=True)
class PlannedCall:
    """One real node (electron or sublattice) as it will be submitted."""

    node_id: int
    name: str
    kind: NodeKind
    fn: Any
    program: Program
    args: tuple[Operand, ...]
    kwargs: dict[str, Operand]
    dep_ids: tuple[int, ...]
    options: ElectronOptions = field(default=DEFAULT_OPTIONS)

    @property
    def label(self) -> str:
        return f"{self.name}({self.node_id})"


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` made of a graph.

    Attributes:
        calls: real node id -> its call, in node order.
        op_parents: OP node id -> the ids of its direct parents (real or OP).
        dependants: node id -> the OP nodes that read it directly.
    """

    calls: dict[int, PlannedCall]
    op_parents: dict[int, tuple[int, ...]]
    dependants: dict[int, tuple[int, ...]]


class _Compiler:
    """Compiles the argument expressions of one consuming node into one Program."""

    def __init__(self, op_exprs: Mapping[int, Expr]) -> None:
        self.op_exprs = op_exprs  # OP node id -> its expression
        self.steps: list[tuple[str, tuple[Operand, ...]]] = []
        self.deps: dict[int, None] = {}
        self._done: dict[int, Operand] = {}  # id(expr) -> operand
        self._keep: list[Expr] = []  # keeps ids stable while compiling

    def _op_expr(self, expr: Expr) -> Expr | None:
        """For a Ref to an OP node, that node's expression."""
        return self.op_exprs.get(expr.node_id) if type(expr) is Ref else None

    def _children(self, expr: Expr) -> tuple[Expr, ...]:
        inner = self._op_expr(expr)
        if inner is not None:
            return (inner,)
        return expr.operands if isinstance(expr, Apply) else ()

    def operand(self, root: Expr) -> Operand:
        if isinstance(root, Const):  # most arguments: no walk needed
            return ("c", root.value)
        stack = [root]
        while stack:
            expr = stack[-1]
            if id(expr) in self._done:
                stack.pop()
                continue
            waiting = [c for c in self._children(expr) if id(c) not in self._done]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            self._keep.append(expr)
            self._done[id(expr)] = self._emit(expr)
        return self._done[id(root)]

    def _emit(self, expr: Expr) -> Operand:
        if isinstance(expr, Const):
            return ("c", expr.value)
        inner = self._op_expr(expr)
        if inner is not None:
            return self._done[id(inner)]
        if isinstance(expr, Ref):
            self.deps[expr.node_id] = None
            return ("n", expr.node_id)
        if isinstance(expr, Apply):
            self.steps.append((expr.op, tuple(self._done[id(o)] for o in expr.operands)))
            return ("s", len(self.steps) - 1)
        raise TypeError(f"unknown expression {expr!r}")


def plan(graph: Graph) -> Plan:
    """Compile ``graph`` into the calls the dispatcher submits and the OP wiring."""
    calls: dict[int, PlannedCall] = {}
    op_parents: dict[int, tuple[int, ...]] = {}
    dependants: dict[int, list[int]] = {}
    op_exprs = {
        n.node_id: n.expr for n in graph.nodes if n.kind is NodeKind.OP and n.expr is not None
    }
    for node in graph.nodes:
        if node.kind is NodeKind.PARAMETER:  # recorded, never run
            continue
        if node.kind is NodeKind.OP:
            parents = tuple(node.data_parents())
            op_parents[node.node_id] = parents
            for p in parents:
                dependants.setdefault(p, []).append(node.node_id)
            continue
        options = node.options or DEFAULT_OPTIONS
        if not node.after and not node.kwargs and all(type(e) is Const for e in node.args):
            # Literal arguments only (most of a fan-out): nothing to compile.
            calls[node.node_id] = PlannedCall(
                node_id=node.node_id,
                name=node.name,
                kind=node.kind,
                fn=node.fn,
                program=NO_STEPS,
                args=tuple(("c", cast(Const, e).value) for e in node.args),
                kwargs={},
                dep_ids=(),
                options=options,
            )
            continue
        comp = _Compiler(op_exprs)
        args = tuple(comp.operand(e) for e in node.args)
        kwargs = {k: comp.operand(e) for k, e in node.kwargs.items()}
        for after in node.after:  # qflow.wait: ordering only, through OP nodes too
            comp.operand(Ref(after))
        calls[node.node_id] = PlannedCall(
            node_id=node.node_id,
            name=node.name,
            kind=node.kind,
            fn=node.fn,
            program=Program(tuple(comp.steps)),
            args=args,
            kwargs=kwargs,
            dep_ids=tuple(comp.deps),
            options=options,
        )
    # Tuples of ints, which the garbage collector stops tracking: a list for each output
    # of a fan-out would be thousands more objects for every collection to scan.
    return Plan(
        calls=calls,
        op_parents=op_parents,
        dependants={n: tuple(ops) for n, ops in dependants.items()},
    )
