"""The dispatch API: dispatch, dispatch_sync, get_result, cancel, redispatch."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, ParamSpec, cast, overload

import ray

from qflow.core.dispatcher import fingerprints
from qflow.core.graph import Graph
from qflow.core.launch import build, check_secrets, record
from qflow.core.status import Status
from qflow.core.stored import stored_graph
from qflow.covalent.waits import Wait
from qflow.electron import Electron
from qflow.exceptions import (
    ClusterError,
    DispatchNotFoundError,
    DispatchTimeoutError,
    QflowInputError,
)
from qflow.executors import check_feasible
from qflow.lattice import Lattice
from qflow.remote.client import Client, client_for
from qflow.remote.store import RemoteStore
from qflow.result import Result
from qflow.runtime.lease import owner_role, reap, service_verdict
from qflow.runtime.process import ProcessRuntime, choose, current
from qflow.settings import Settings, max_sublattice_depth, parse_resources

P = ParamSpec("P")

#: This process's runtime (kept under its old name for code that reads it).
_runtime = current

__all__ = ["cancel", "dispatch", "dispatch_sync", "get_result", "init", "redispatch"]


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    resources: dict[str, float] | None = None,
) -> str:
    """Choose the Ray this process uses, before its first dispatch.

    Without a call, qflow uses ``RAY_ADDRESS``, else the head of ``qflow start``,
    else one a ``ray start --head`` announced, else a private embedded Ray.

    Args:
        address: a Ray cluster to join (``"host:port"``); overrides ``RAY_ADDRESS``.
        num_cpus: CPUs for the embedded local Ray.
        resources: custom resources for the embedded local Ray, e.g.
            ``{"qpu:simulated": 1}`` so that the ``simulated.qpu`` backend can run here.

    Returns:
        ``"embedded"``, ``"joined"`` or ``"existing"`` (Ray was already up in this process).

    Raises:
        QflowInputError: Ray already runs in this process and this call asks for
            something else.
        ClusterConnectionError: ``address`` does not answer.
    """
    chosen: dict[str, Any] = {}
    if address is not None:
        if not isinstance(address, str) or not address:
            raise QflowInputError(
                f"address is a Ray address such as '127.0.0.1:6379'; got {address!r}."
            )
        chosen["ray_address"] = address
    if num_cpus is not None:
        chosen["num_cpus"] = num_cpus
    if resources is not None:
        chosen["resources"] = parse_resources(resources)
    if chosen and ray.is_initialized():
        raise QflowInputError(
            f"Ray is already running in this process, so init({', '.join(chosen)}=...) "
            "cannot change it. Call qflow.init before the first dispatch (or ray.init)."
        )
    dataclasses.replace(Settings.from_env(), **chosen)  # validates before anything starts
    rt = choose(chosen)
    rt.service()
    return rt.mode


def _as_lattice(obj: Any, caller: str) -> Lattice[..., Any]:
    if isinstance(obj, Lattice):
        return obj
    if isinstance(obj, Electron) and obj.is_sublattice:
        return cast(Lattice[..., Any], obj.fn)
    what = "an electron" if isinstance(obj, Electron) else f"{type(obj).__name__} {obj!r}"
    raise QflowInputError(
        f"{caller} takes a lattice; got {what}. Decorate the workflow with @qflow.lattice "
        f"and pass it: qflow.{caller}(my_lattice)(*args)."
        + (" To run a single electron, wrap it in a lattice." if isinstance(obj, Electron) else "")
    )


def _launch(
    lat: Lattice[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    reuse_from: str | None = None,
    replace: dict[str, Any] | None = None,
) -> str:
    new = build(lat, args, kwargs, replace=replace)
    rt = _runtime()
    check_secrets(new.graph, rt.settings.home)  # before Ray is even reached
    service = rt.service()  # connect first: a cluster that does not answer leaves no row
    if lat.triggers and service is None:
        raise ClusterError(
            f"Lattice {lat.__name__} has triggers, which must keep watching after this "
            "script ends: run `qflow start` first (the service watches them and dispatches "
            "the lattice each time one fires), then dispatch again."
        )
    check_feasible(new.graph)
    max_sublattice_depth()  # a bad setting fails here, before a record is made
    reuse = _reusable(rt, reuse_from, lat, new.graph) if reuse_from else {}
    dispatch_id = record(rt.store, new, owner=rt.heartbeat.owner)
    if lat.triggers and service is not None:  # registered, not run: each firing
        service.add_triggers(dispatch_id)  # starts a dispatch of its own
        return dispatch_id
    rt.start(dispatch_id, new.graph, reuse)
    return dispatch_id


def stop_triggers(dispatch_ids: str | Iterable[str]) -> list[str]:
    """Stop the triggers registered by dispatching a lattice with ``triggers=``.

    Args:
        dispatch_ids: the id (or ids) ``dispatch`` returned for such lattices.

    Returns:
        The ids of the dispatches the triggers started.

    Raises:
        ClusterError: no ``qflow start`` service is running (it is what watches them).
    """
    ids = [dispatch_ids] if isinstance(dispatch_ids, str) else list(dispatch_ids)
    client = client_for()
    if client is not None:
        return client.stop_triggers(ids)
    rt = _runtime()
    service = rt.service()
    if service is None:
        raise ClusterError(
            "Triggers are watched by the `qflow start` service, and none is "
            "running here; there are no triggers to stop."
        )
    started: list[str] = []
    for dispatch_id in ids:
        _status_row(rt, dispatch_id)  # unknown ids raise DispatchNotFoundError
        started += service.stop_triggers(dispatch_id)
    return started


def _reusable(
    rt: ProcessRuntime, old_id: str, lat: Lattice[..., Any], graph: Graph
) -> dict[int, bytes]:
    """Outputs of the old dispatch's completed nodes that the new graph would recompute
    unchanged. Fingerprints are taken here, from the old graph rebuilt with the same
    lattice object, rather than on every dispatch's hot path."""
    old_fps = fingerprints(stored_graph(_row(rt, old_id)).build(lat))
    fps = fingerprints(graph)
    return {
        r["node_id"]: r["output"]
        for r in rt.store.get_nodes(old_id)
        if r["status"] == Status.COMPLETED
        and r["kind"] != "op"
        and old_fps.get(r["node_id"]) == fps.get(r["node_id"])
        and isinstance(r["output"], bytes)
    }


def dispatch(lattice: Lattice[P, Any], dispatcher_addr: str | None = None) -> Callable[P, str]:
    """Return a function that dispatches ``lattice`` with its arguments and returns the id.

    The lattice function runs at once to build the graph (its exceptions propagate);
    the electrons then run on Ray while this returns. With a qflow server chosen
    (``dispatcher_addr``, ``QFLOW_SERVER`` or ``qflow login``), the lattice and its
    inputs go to the server, which builds, records and runs it.

    Args:
        lattice: the ``@qflow.lattice`` to run.
        dispatcher_addr: a qflow server's URL (or ``host:port``), as in Covalent.

    Example:
        >>> import qflow
        >>> @qflow.electron
        ... def inc(x):
        ...     return x + 1
        >>> @qflow.lattice
        ... def flow(x):
        ...     return inc(inc(x))
        >>> dispatch_id = qflow.dispatch(flow)(1)
        >>> qflow.get_result(dispatch_id, wait=True).result
        3
    """
    lat = _as_lattice(lattice, "dispatch")
    client = client_for(dispatcher_addr)

    def submit(*args: P.args, **kwargs: P.kwargs) -> str:
        if client is not None:
            return client.dispatch(lat, args, kwargs)
        return _launch(lat, args, kwargs)

    return submit


def dispatch_sync(
    lattice: Lattice[P, Any], dispatcher_addr: str | None = None
) -> Callable[P, Result]:
    """Like :func:`dispatch`, but wait and return the :class:`Result`.

    Example:
        >>> import qflow
        >>> @qflow.lattice
        ... def flow(x):
        ...     return x
        >>> qflow.dispatch_sync(flow)(5).result
        5
    """
    submit = dispatch(_as_lattice(lattice, "dispatch_sync"), dispatcher_addr)

    def run(*args: P.args, **kwargs: P.kwargs) -> Result:
        return get_result(submit(*args, **kwargs), wait=True, dispatcher_addr=dispatcher_addr)

    return run


def _check_id(dispatch_id: Any) -> None:
    if not isinstance(dispatch_id, str):
        raise QflowInputError(
            f"A dispatch id is the string qflow.dispatch returned; got "
            f"{type(dispatch_id).__name__} {dispatch_id!r}."
        )


def _running_sublattice(rt: ProcessRuntime, dispatch_id: str) -> tuple[str, int] | None:
    """``(parent id, node id)`` when ``dispatch_id`` names the child dispatch of a
    sublattice node that has not ended: its record is written when it ends."""
    parent, _, node = dispatch_id.rpartition("/")
    if not parent or not node.isdigit():
        return None
    row = next((r for r in rt.store.get_node_texts(parent) if r["node_id"] == int(node)), None)
    if row is None or row["kind"] != "sublattice" or Status(row["status"]).is_final:
        return None
    return parent, int(node)


def _not_found(rt: ProcessRuntime, dispatch_id: str) -> DispatchNotFoundError:
    running = _running_sublattice(rt, dispatch_id)
    if running is not None:
        return DispatchNotFoundError(
            f"Dispatch {dispatch_id} is the sublattice of node {running[1]} of dispatch "
            f"{running[0]}, which is still running: its record is written when it ends. "
            f"Wait on the parent (get_result({running[0]!r}, wait=True)), or cancel it "
            f"with qflow.cancel({dispatch_id!r})."
        )
    return DispatchNotFoundError(
        f"No dispatch {dispatch_id!r} in the results store at {rt.settings.db_path}. "
        "Check the id (`qflow list` shows recent ones) and that QFLOW_HOME is the one "
        "the dispatch was made with."
    )


def _row(rt: ProcessRuntime, dispatch_id: str) -> dict[str, Any]:
    _check_id(dispatch_id)
    row = rt.store.get_dispatch(dispatch_id)
    if row is None:
        raise _not_found(rt, dispatch_id)
    return row


def _status_row(rt: ProcessRuntime, dispatch_id: str) -> dict[str, Any]:
    """The dispatch's status columns (no blobs), after ending it if nothing runs it."""
    _check_id(dispatch_id)
    row = rt.store.get_status(dispatch_id)
    if row is None:
        raise _not_found(rt, dispatch_id)
    if dispatch_id not in rt.local and reap(rt.store, row):
        row = rt.store.get_status(dispatch_id) or row
    return row


def _finished(row: dict[str, Any]) -> bool:
    # cancel() sets the status at once; the dispatcher sets end_time once it has settled.
    return Status(row["status"]).is_final and row.get("end_time") is not None


@overload
def get_result(
    dispatch_id: str,
    wait: bool | Wait = ...,
    dispatcher_addr: str | None = ...,
    status_only: Literal[False] = ...,
    timeout: float | None = ...,
    *,
    workflow_output: bool = ...,
    intermediate_outputs: bool = ...,
    sublattice_results: bool = ...,
    qelectron_db: bool = ...,
    results_dir: str | None = ...,
) -> Result: ...


@overload
def get_result(
    dispatch_id: str,
    wait: bool | Wait,
    dispatcher_addr: str | None,
    status_only: Literal[True],
    timeout: float | None = ...,
    *,
    workflow_output: bool = ...,
    intermediate_outputs: bool = ...,
    sublattice_results: bool = ...,
    qelectron_db: bool = ...,
    results_dir: str | None = ...,
) -> dict[str, Any]: ...


@overload
def get_result(
    dispatch_id: str,
    wait: bool | Wait = ...,
    dispatcher_addr: str | None = ...,
    *,
    status_only: Literal[True],
    timeout: float | None = ...,
    workflow_output: bool = ...,
    intermediate_outputs: bool = ...,
    sublattice_results: bool = ...,
    qelectron_db: bool = ...,
    results_dir: str | None = ...,
) -> dict[str, Any]: ...


def get_result(
    dispatch_id: str,
    wait: bool | Wait = False,
    dispatcher_addr: str | None = None,
    status_only: bool = False,
    timeout: float | None = None,
    *,
    workflow_output: bool = True,
    intermediate_outputs: bool = True,
    sublattice_results: bool = True,
    qelectron_db: bool = False,
    results_dir: str | None = None,
) -> Result | dict[str, Any]:
    """The :class:`Result` of a dispatch, from any process.

    A dispatch whose dispatching process (or dispatcher service) is gone is ended
    FAILED here, with the reason, so ``wait`` never waits for nothing.

    Args:
        dispatch_id: what :func:`dispatch` returned.
        wait: block until the dispatch is COMPLETED, FAILED or CANCELLED; or a
            :class:`qflow.waits.Wait` such as ``qflow.wait.LONG``: wait that long, then
            return the Result as it is (Covalent's behaviour).
        dispatcher_addr: a qflow server's URL (or ``host:port``), as in Covalent; by
            default ``QFLOW_SERVER`` or ``qflow login``'s, else this machine.
        status_only: return only ``{"id": ..., "status": ...}``.
        timeout: with ``wait``, give up after this many seconds.
        workflow_output: False leaves the lattice's return value out (``result``
            is None), as in Covalent: for cheaply checking a large dispatch.
        intermediate_outputs: False leaves every node's output out (None); the rest
            of each node (status, times, errors, prints) is there.
        sublattice_results: False leaves sublattice nodes' ``sublattice_result`` out.
        qelectron_db, results_dir: accepted for Covalent code; qflow keeps no
            qelectron database and no results_dir.

    Raises:
        DispatchNotFoundError: no dispatch has this id.
        DispatchTimeoutError: still running after ``timeout`` seconds (a TimeoutError).
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
    ):
        raise QflowInputError(
            f"timeout is a number of seconds >= 0, or None to wait as long "
            f"as it takes; got {timeout!r}."
        )
    if isinstance(wait, Wait):
        if timeout is None and math.isfinite(wait.seconds):
            flags: dict[str, Any] = {
                "workflow_output": workflow_output,
                "intermediate_outputs": intermediate_outputs,
                "sublattice_results": sublattice_results,
            }
            addr = {"dispatcher_addr": dispatcher_addr}
            try:
                return get_result(  # type: ignore[call-overload, no-any-return]
                    dispatch_id,
                    wait=True,
                    status_only=status_only,
                    timeout=wait.seconds,
                    **addr,
                    **flags,
                )
            except DispatchTimeoutError:
                return get_result(  # type: ignore[call-overload, no-any-return]
                    dispatch_id, status_only=status_only, **addr, **flags
                )
        wait = True
    client = client_for(dispatcher_addr)
    if client is not None:
        return _remote_result(
            client,
            dispatch_id,
            wait=bool(wait),
            timeout=timeout,
            status_only=status_only,
            workflow_output=workflow_output,
            intermediate_outputs=intermediate_outputs,
            sublattice_results=sublattice_results,
        )
    rt = _runtime()
    row = _status_row(rt, dispatch_id)
    if wait and not _finished(row):
        deadline = None if timeout is None else time.monotonic() + timeout
        local = rt.local.get(dispatch_id)
        if local is not None:
            if not local.done.wait(timeout):
                raise _timed_out(dispatch_id, timeout)
            if local.crash is not None and not _finished(_status_row(rt, dispatch_id)):
                raise ClusterError(
                    f"The dispatcher of {dispatch_id} stopped without recording an end: "
                    f"{local.crash!r}"
                ) from local.crash
        # The head's service, where it runs the dispatch, says when it ends; the store
        # is polled otherwise (a dispatch another process runs, or one resuming).
        service = rt.connected_service() if local is None else None
        pause, checked = 0.002, time.monotonic()
        while not _finished(row := _status_row(rt, dispatch_id)):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left < 0:
                raise _timed_out(dispatch_id, timeout)
            if time.monotonic() - checked > 1.0:
                checked = time.monotonic()
                _raise_if_paused(rt, row)
            if service is not None and service.wait(
                dispatch_id, 1.0 if left is None else min(1.0, left)
            ):
                continue
            service = None
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
    if status_only:
        return {"id": dispatch_id, "status": Status(row["status"])}
    return Result(
        rt.store,
        _row(rt, dispatch_id),
        workflow_output=workflow_output,
        intermediate_outputs=intermediate_outputs,
        sublattice_results=sublattice_results,
    )


def _remote_result(
    client: Client,
    dispatch_id: str,
    *,
    wait: bool,
    timeout: float | None,
    status_only: bool,
    **flags: bool,
) -> Result | dict[str, Any]:
    """:func:`get_result` from a qflow server: wait on its side, then read its store."""
    _check_id(dispatch_id)
    store = RemoteStore(client)
    full = None
    if wait:  # a finished wait's answer carries the dispatch's record: one round trip
        row = client.wait(dispatch_id, timeout, full=not status_only)
        if not row.get("finished"):
            raise _timed_out(dispatch_id, timeout)
        full = store.bind(row.get("dispatch"))
    if status_only:
        found = row if wait else store.get_status(dispatch_id)
        if found is None:
            raise DispatchNotFoundError(f"No dispatch {dispatch_id!r} on the server {client.url}.")
        return {"id": dispatch_id, "status": Status(found["status"])}
    full = full or store.get_dispatch(dispatch_id)
    if full is None:
        raise DispatchNotFoundError(f"No dispatch {dispatch_id!r} on the server {client.url}.")
    return Result(store, full, **flags)


def _raise_if_paused(rt: ProcessRuntime, row: dict[str, Any]) -> None:
    """Waiting for a dispatch whose ``qflow start`` head is stopped would never end."""
    if owner_role(row.get("owner")) == "service":
        verdict, why = service_verdict(rt.store, row)
        if verdict == "paused":
            raise ClusterError(f"Dispatch {row['dispatch_id']} is paused: {why}.")


def _timed_out(dispatch_id: str, timeout: float | None) -> DispatchTimeoutError:
    return DispatchTimeoutError(
        f"Dispatch {dispatch_id} is still running after {timeout} s. It goes on running; "
        "call get_result again later, or qflow.cancel it."
    )


def cancel(
    dispatch_id: str,
    task_ids: Iterable[int] | int | None = None,
    dispatcher_addr: str | None = None,
) -> str:
    """Cancel a dispatch at once, or only the nodes ``task_ids`` (their dependants never run).

    Args:
        dispatch_id: what :func:`dispatch` returned.
        task_ids: node ids to cancel; by default the whole dispatch.
        dispatcher_addr: a qflow server's URL (or ``host:port``), as in Covalent.

    Returns:
        A short message saying what was cancelled.
    """
    _check_id(dispatch_id)
    client = client_for(dispatcher_addr)
    if client is not None:
        ids = [task_ids] if isinstance(task_ids, int) else task_ids
        return client.cancel(dispatch_id, None if ids is None else list(ids))
    rt = _runtime()
    running = (
        _running_sublattice(rt, dispatch_id) if rt.store.get_status(dispatch_id) is None else None
    )
    if running is not None and task_ids is None:  # a child dispatch that runs in its node
        parent, node = running
        cancel(parent, [node])
        return f"Cancelled sublattice dispatch {dispatch_id} (node {node} of {parent})."
    row = _status_row(rt, dispatch_id)
    if isinstance(task_ids, int):
        task_ids = [task_ids]
    ids = None if task_ids is None else sorted(set(task_ids))
    if ids is not None:
        known = {r["node_id"] for r in rt.store.get_nodes(dispatch_id)}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise QflowInputError(
                f"Dispatch {dispatch_id} has no nodes {unknown}; valid node ids are "
                f"0..{max(known)}. See `qflow show {dispatch_id}`."
            )
    if Status(row["status"]).is_final:
        return f"Dispatch {dispatch_id} already ended {row['status']}; nothing to cancel."
    if ids is None:
        ended = cancel_recorded(rt.store, row, running_here=dispatch_id in rt.local)
        if ended is not None:
            return ended
    else:
        rt.store.update_nodes(dispatch_id, [(i, {"status": Status.CANCELLED}) for i in ids])
    local = rt.local.get(dispatch_id)
    if local is not None:
        local.cancel(ids)
    elif owner_role(row.get("owner")) == "service" and (service := rt.service()) is not None:
        service.cancel(dispatch_id, ids)
    what = "dispatch" if ids is None else f"nodes {ids} of dispatch"
    return f"Cancelled {what} {dispatch_id}."


def cancel_recorded(store: Any, row: dict[str, Any], running_here: bool = False) -> str | None:
    """Cancel a whole unfinished dispatch through its record alone, without Ray.

    Whatever runs it (a script's dispatcher or the ``qflow start`` service) reads the
    CANCELLED status within a quarter of a second and stops. A dispatch nothing runs any
    more, or whose head is stopped, is ended here; the message then says so. Returns
    None when the runner will end it.
    """
    dispatch_id = row["dispatch_id"]
    store.update_dispatch(dispatch_id, status=Status.CANCELLED)
    if not running_here and reap(store, {**row, "status": Status.CANCELLED}):
        return f"Cancelled dispatch {dispatch_id} (nothing was running it any more)."
    if owner_role(row.get("owner")) == "service" and service_verdict(store, row)[0] == "paused":
        store.end_dispatch(dispatch_id, Status.CANCELLED, None)
        return f"Cancelled dispatch {dispatch_id} (its qflow head is not running)."
    return None


def redispatch(
    dispatch_id: str,
    dispatcher_addr: str | None = None,
    replace_electrons: dict[str, Electron[..., Any]] | None = None,
    reuse_previous_results: bool = False,
) -> Callable[..., str]:
    """Dispatch an earlier lattice again, optionally with some electrons replaced.

    Called with no arguments, the returned function reuses the original args and
    kwargs (both of them: Covalent drops the kwargs when electrons are replaced).

    Args:
        dispatch_id: the dispatch to repeat.
        dispatcher_addr: a qflow server's URL (or ``host:port``), as in Covalent.
        replace_electrons: ``{electron name: new electron}``.
        reuse_previous_results: take the outputs of unchanged completed nodes (same
            function, same inputs, same ancestors) instead of running them again.
    """
    replace = dict(replace_electrons or {})
    bad = {k: v for k, v in replace.items() if not callable(v)}
    if bad:
        raise QflowInputError(f"replace_electrons maps electron names to electrons; got {bad!r}.")
    client = client_for(dispatcher_addr)
    if client is not None:
        server = client

        def remote(*args: Any, **kwargs: Any) -> str:
            return server.dispatch(
                None,
                tuple(args),
                dict(kwargs),
                redispatch_of=dispatch_id,
                replace=replace,
                reuse=reuse_previous_results,
            )

        return remote
    rt = _runtime()
    row = _row(rt, dispatch_id)
    if not row.get("graph"):
        raise QflowInputError(
            f"Dispatch {dispatch_id} is a sublattice; redispatch its top-level dispatch "
            f"{row.get('parent_id')} instead."
        )
    stored = stored_graph(row)
    lat: Lattice[..., Any] = stored.lattice
    old_inputs = stored.inputs

    def submit(*args: Any, **kwargs: Any) -> str:
        if not args and not kwargs:
            args, kwargs = old_inputs["args"], old_inputs["kwargs"]
        return _launch(
            lat,
            tuple(args),
            dict(kwargs),
            replace=replace,
            reuse_from=dispatch_id if reuse_previous_results else None,
        )

    return submit
