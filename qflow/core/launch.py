"""Building and recording a new dispatch: the graph from a lattice and its inputs (or
from a stored dispatch), checked, then one row for the dispatch and one per node. Every
dispatch starts here, whether from the public API, a trigger firing in the service, or
a sublattice on a worker; what runs it afterwards is the caller's runner.

Example:
    >>> import qflow
    >>> from qflow.store.sqlite import SQLiteStore
    >>> @qflow.lattice
    ... def flow(x):
    ...     return x
    >>> store = SQLiteStore(":memory:")
    >>> record(store, "d1", build(flow, (1,), {}))
    'd1'
    >>> store.get_dispatch("d1")["status"]
    'NEW_OBJECT'
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from qflow.core.graph import VIRTUAL_KINDS, Const, Graph, NodeKind
from qflow.core.status import Status
from qflow.core.stored import stored_graph
from qflow.core.task import PLAIN_TYPES, dumps_value
from qflow.core.text import source_text, value_text
from qflow.exceptions import QflowConfigError, QflowSerializationError
from qflow.executors import executor_name
from qflow.secrets.checks import warn_credential_globals
from qflow.secrets.keep import SecretKeep
from qflow.secrets.providers import missing, missing_text
from qflow.store.base import ResultStore, ToPickle, now_iso

__all__ = [
    "NewDispatch",
    "build",
    "check_picklable",
    "check_secrets",
    "rebuild",
    "record",
    "record_new_dispatch",
    "secret_names",
]


@dataclass(frozen=True)
class NewDispatch:
    """A dispatch built and checked, ready to record.

    Attributes:
        graph: the graph its lattice built.
        inputs: ``{"args": ..., "kwargs": ...}``, to build it again later: pickled, or
            for the store to pickle as it writes it.
        inputs_text: the same, as text for readers that never unpickle.
        graph_blob: the pickled lattice and replaced electrons (None for a sublattice,
            whose graph is its parent's to rebuild).
        source: the lattice's source text, when Python has it.
        tags: the dispatch's tags.
    """

    graph: Graph
    inputs: bytes | ToPickle
    inputs_text: str
    graph_blob: bytes | None
    source: str | None = None
    tags: tuple[str, ...] = ()


def build(
    lattice: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    replace: dict[str, Any] | None = None,
    top_level: bool = True,
) -> NewDispatch:
    """Build ``lattice``'s graph with the arguments (the lattice function runs; nothing
    else does) and, for a top-level dispatch (``top_level``), check that everything a
    worker needs pickles, before any compute is spent.

    Raises:
        QflowSerializationError: an electron's function or argument, or the inputs,
            cannot be pickled; named.
    """
    graph: Graph = lattice.build_graph(*args, _replace=replace, **kwargs)
    if top_level:  # a sublattice already runs: its nodes' own submission reports these
        check_picklable(graph)
        functions = {id(n.fn): n.fn for n in graph.nodes if n.fn is not None}
        warn_credential_globals([lattice.workflow_function, *functions.values()])
    return NewDispatch(
        graph=graph,
        inputs=ToPickle(
            {"args": args, "kwargs": kwargs}, f"The inputs of lattice {lattice.__name__}"
        ),
        inputs_text=_inputs_text(lattice, args, kwargs),
        graph_blob=(
            cloudpickle.dumps({"lattice": lattice, "replace": replace}) if top_level else None
        ),
        source=source_text(lattice.workflow_function) if top_level else None,
        tags=tuple(getattr(lattice, "tags", ()) or ()),
    )


def _inputs_text(lattice: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The inputs as pages show them: the lattice's own description when it has one."""
    describe = getattr(lattice, "describe_inputs", None)
    if describe is not None:
        try:
            return str(describe(*args, **kwargs))
        except Exception as exc:  # a description must never stop a dispatch
            return f"{value_text({'args': args, 'kwargs': kwargs})} (not described: {exc!r})"
    return value_text({"args": args, "kwargs": kwargs})


def rebuild(
    row: Mapping[str, Any], lattice: Any = None, *, tags: tuple[str, ...] = ()
) -> NewDispatch:
    """A new dispatch of the stored dispatch ``row``: its graph built again by
    ``lattice`` (default: the stored one) with the stored inputs and replaced electrons,
    and the row's tags followed by ``tags``."""
    stored = stored_graph(row)
    lat = stored.lattice if lattice is None else lattice
    return NewDispatch(
        graph=stored.build(lat),
        inputs=row["inputs"],
        inputs_text=row.get("inputs_text") or "",
        graph_blob=cloudpickle.dumps({"lattice": lat, "replace": stored.replace}),
        source=row.get("source"),
        tags=tuple(json.loads(row.get("tags") or "[]")) + tags,
    )


def record(
    store: ResultStore,
    new: NewDispatch,
    *,
    dispatch_id: str | None = None,
    owner: str | None = None,
) -> str:
    """Record ``new`` in ``store`` (under a fresh id unless given), owned by ``owner``;
    return its id."""
    dispatch_id = dispatch_id or str(uuid.uuid4())
    record_new_dispatch(
        store,
        dispatch_id,
        new.graph,
        inputs=new.inputs,
        graph_blob=new.graph_blob,
        owner=owner,
        inputs_text=new.inputs_text,
        source=new.source,
        tags=new.tags,
    )
    return dispatch_id


class _Discard:
    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


def secret_names(graph: Graph) -> tuple[str, ...]:
    """Every secret some node of ``graph`` asks for, in order of first request."""
    names: dict[str, None] = {}
    for node in graph.nodes:
        for name in node.options.secrets if node.options is not None else ():
            names[name] = None
    return tuple(names)


def check_secrets(graph: Graph, home: Path) -> None:
    """Refuse, before anything is recorded or run, a dispatch asking for secrets that
    neither the keep of ``home`` nor a provider has; the error says how to set them."""
    names = secret_names(graph)
    if names:
        keep = SecretKeep.of_home(home)
        absent = missing(names, keep)
        if absent:
            raise QflowConfigError(missing_text(absent, keep))


def check_picklable(graph: Graph) -> None:
    """Raise :class:`QflowSerializationError` naming the first electron whose function or
    arguments cannot be pickled, before any compute is spent."""
    functions = {id(n.fn): n.fn for n in graph.nodes}  # a fan-out shares one function
    values = [
        v
        for n in graph.nodes
        for v in (*n.args, *n.kwargs.values())
        if type(v) is not Const or type(v.value) not in PLAIN_TYPES
    ]
    try:  # one pickler for everything (per-node picklers cost more than the dispatch),
        # writing nowhere, so big arguments are never all held as bytes at once
        # (protocol 5: numpy hands over its buffer rather than a copy of it)
        cloudpickle.Pickler(_Discard(), protocol=5).dump((list(functions.values()), values))
        return
    except Exception:  # find the culprit below, to name it
        pass
    checked: set[int] = set()
    for node in graph.nodes:
        parts: dict[str, Any] = {f"argument {i}": a for i, a in enumerate(node.args)}
        parts.update({f"argument {k!r}": v for k, v in node.kwargs.items()})
        if id(node.fn) not in checked:
            checked.add(id(node.fn))
            parts["function"] = node.fn
        for what, value in parts.items():
            try:
                cloudpickle.dumps(value)
            except Exception as exc:
                raise QflowSerializationError(
                    f"The {what} of electron {node.label} cannot be pickled ({exc!r}), so it "
                    "cannot be shipped to a Ray worker. Pass plain data (numbers, arrays, "
                    "paths) and open handles such as files, locks or sockets inside the "
                    "electron."
                ) from exc


def record_new_dispatch(
    store: ResultStore,
    dispatch_id: str,
    graph: Graph,
    *,
    inputs: bytes | ToPickle | None,
    graph_blob: bytes | None,
    parent_id: str | None = None,
    parent_node_id: int | None = None,
    owner: str | None = None,
    inputs_text: str | None = None,
    source: str | None = None,
    tags: tuple[str, ...] = (),
) -> None:
    """Insert the dispatch row, owned by ``owner``, and a NEW_OBJECT row per node
    (COMPLETED, with its value, for a parameter node: there is nothing to run)."""
    created = now_iso()
    store.create_dispatch(
        {
            "dispatch_id": dispatch_id,
            "name": graph.name,
            "status": Status.NEW_OBJECT,
            "parent_id": parent_id,
            "parent_node_id": parent_node_id,
            "created_at": created,
            "owner": owner,
            "heartbeat": time.time(),
            "inputs_text": inputs_text,
            "source": source,
            "electron_sources": _electron_sources(graph),
            "tags": json.dumps(list(tags)) if tags else None,
            "inputs": inputs,
            "graph": graph_blob,
            "graph_text": None,
        },  # made when read
        _node_rows(graph, created),
    )


def _node_rows(graph: Graph, created: str) -> list[dict[str, Any]]:
    rows = []
    names: dict[tuple[int, NodeKind], str | None] = {}  # a fan-out shares one options object
    for n in graph.nodes:
        if n.kind is NodeKind.PARAMETER:
            rows.append(_parameter_row(n, created))
            continue
        key = (id(n.options), n.kind)
        if key not in names:
            names[key] = _executor_name(n)
        rows.append(
            {
                "node_id": n.node_id,
                "name": n.name,
                "kind": n.kind.value,
                "parents": repr(n.parents()),
                "status": Status.NEW_OBJECT,
                "executor": names[key],
            }
        )
    return rows


def _parameter_row(node: Any, created: str) -> dict[str, Any]:
    value = node.expr.value
    return {
        "node_id": node.node_id,
        "name": node.name,
        "kind": str(node.kind),
        "parents": "[]",
        "status": Status.COMPLETED,
        "start_time": created,
        "end_time": created,
        # A big argument is pickled by the store straight into its file: never held
        # whole as bytes beside the value itself.
        "output": (
            dumps_value(value)
            if type(value) in PLAIN_TYPES
            else ToPickle(value, f"Argument {node.name} of the lattice")
        ),
        "output_text": value_text(value),
        "stdout": "",
        "stderr": "",
    }


def _electron_sources(graph: Graph) -> str | None:
    """``{electron name: its function's source}`` as JSON, for readers that never
    unpickle (functions without source, e.g. typed into a REPL, are left out)."""
    sources: dict[str, str] = {}
    seen: set[int] = set()
    for node in graph.nodes:
        if node.kind in VIRTUAL_KINDS or id(node.fn) in seen or node.name in sources:
            continue
        seen.add(id(node.fn))
        fn = getattr(node.fn, "workflow_function", node.fn)  # a sublattice's lattice
        text = source_text(fn)
        if text is not None:
            sources[node.name] = text
    return json.dumps(sources) if sources else None


def _executor_name(node: Any) -> str | None:
    """The executor a node runs on, by name, for the record (None for OP and parameter
    nodes, which never run)."""
    if node.kind in VIRTUAL_KINDS:
        return None
    return executor_name(node.options.executor if node.options is not None else None)
