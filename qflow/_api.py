"""The dispatch API: dispatch, dispatch_sync, get_result, cancel, redispatch."""

from __future__ import annotations

import atexit
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle
import ray

from qflow._cluster import ensure_ray, find_service
from qflow._dispatcher import (Dispatcher, check_picklable, fingerprints, now_iso,
                               record_new_dispatch)
from qflow._graph import Graph
from qflow._status import Status
from qflow.electron import Electron
from qflow.exceptions import (ClusterError, DispatchNotFoundError, QflowInputError,
                              QflowSerializationError)
from qflow.lattice import Lattice
from qflow.result import Result
from qflow.settings import Settings
from qflow.store.sqlite import SQLiteStore

__all__ = ["cancel", "dispatch", "dispatch_sync", "get_result", "redispatch"]


class _Runtime:
    """Per-process state: the store, and the dispatches this process is running."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = SQLiteStore(settings.db_path)
        self.local: dict[str, Dispatcher] = {}
        self._service: Any = None
        self._ray_checked = False
        self._lock = threading.Lock()

    def service(self) -> Any:
        """Connect to Ray (once) and return the persistent dispatcher, if any."""
        with self._lock:
            if not self._ray_checked:
                mode = ensure_ray(self.settings)
                self._service = None if mode == "embedded" else find_service()
                self._ray_checked = True
        return self._service

    def start(self, dispatch_id: str, graph: Graph, reuse: dict[int, bytes]) -> None:
        service = self.service()
        if service is not None:
            try:
                ray.get(service.run.remote(str(self.settings.db_path), dispatch_id,
                                           cloudpickle.dumps(graph), reuse))
                return
            except ray.exceptions.RayError as exc:
                raise ClusterError(
                    f"The qflow dispatcher service did not take dispatch {dispatch_id}: {exc}. "
                    "Check it with `qflow status`; restart with `qflow stop && qflow start`."
                ) from exc
        dispatcher = Dispatcher(self.store, dispatch_id, graph, reuse)
        self.local[dispatch_id] = dispatcher

        def run() -> None:
            try:
                dispatcher.run()
            finally:
                # The store has the outcome; keeping the dispatcher would keep every output.
                self.local.pop(dispatch_id, None)

        threading.Thread(target=run, name=f"qflow-{dispatch_id}", daemon=True).start()

    def abandon_running(self) -> None:
        """At exit, mark this process's unfinished dispatches, which die with it."""
        for dispatch_id, dispatcher in list(self.local.items()):
            if not dispatcher.done.is_set():
                row = self.store.get_dispatch(dispatch_id)
                if row and not Status(row["status"]).is_final:
                    self.store.update_dispatch(
                        dispatch_id, status=Status.FAILED, end_time=now_iso(),
                        error="The dispatching process exited before the dispatch finished. "
                              "Run `qflow start` first so that dispatches outlive the client.")


_runtimes: dict[str, _Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime() -> _Runtime:
    settings = Settings.from_env()
    key = str(settings.db_path)
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = _Runtime(settings)
        return _runtimes[key]


@atexit.register
def _on_exit() -> None:
    for rt in list(_runtimes.values()):
        try:
            rt.abandon_running()
        except Exception:  # the store may already be gone at interpreter exit
            pass


def _as_lattice(obj: Any, caller: str) -> Lattice:
    if isinstance(obj, Lattice):
        return obj
    if isinstance(obj, Electron) and obj.is_sublattice:
        return obj.fn
    what = "an electron" if isinstance(obj, Electron) else f"{type(obj).__name__} {obj!r}"
    raise QflowInputError(
        f"{caller} takes a lattice; got {what}. Decorate the workflow with @qflow.lattice "
        f"and pass it: qflow.{caller}(my_lattice)(*args)."
        + (" To run a single electron, wrap it in a lattice." if isinstance(obj, Electron) else "")
    )


def _launch(lat: Lattice, args: tuple, kwargs: dict, *, reuse_from: str | None = None,
            replace: dict[str, Any] | None = None) -> str:
    graph = lat.build_graph(*args, _replace=replace, **kwargs)
    check_picklable(graph)
    try:
        inputs = cloudpickle.dumps({"args": args, "kwargs": kwargs})
    except Exception as exc:
        raise QflowSerializationError(
            f"The inputs of lattice {lat.__name__} cannot be pickled: {exc!r}.") from exc
    rt = _runtime()
    dispatch_id = str(uuid.uuid4())
    reuse = _reusable(rt, reuse_from, lat, graph) if reuse_from else {}
    record_new_dispatch(rt.store, dispatch_id, graph, inputs=inputs,
                        graph_blob=cloudpickle.dumps({"lattice": lat}))
    rt.start(dispatch_id, graph, reuse)
    return dispatch_id


def _reusable(rt: _Runtime, old_id: str, lat: Lattice, graph: Graph) -> dict[int, bytes]:
    """Outputs of the old dispatch's completed nodes that the new graph would recompute
    unchanged. Fingerprints are taken here, from the old graph rebuilt with the same
    lattice object, rather than on every dispatch's hot path."""
    old_inputs = cloudpickle.loads(_row(rt, old_id)["inputs"])
    old_fps = fingerprints(lat.build_graph(*old_inputs["args"], **old_inputs["kwargs"]))
    fps = fingerprints(graph)
    return {r["node_id"]: r["output"] for r in rt.store.get_nodes(old_id)
            if r["status"] == Status.COMPLETED and r["kind"] != "op"
            and old_fps.get(r["node_id"]) == fps.get(r["node_id"]) and r["output"] is not None}


def dispatch(lattice: Lattice) -> Callable[..., str]:
    """Return a function that dispatches ``lattice`` with its arguments and returns the id.

    The lattice function runs at once to build the graph (its exceptions propagate);
    the electrons then run on Ray while this returns.

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

    def submit(*args: Any, **kwargs: Any) -> str:
        return _launch(lat, args, kwargs)

    return submit


def dispatch_sync(lattice: Lattice) -> Callable[..., Result]:
    """Like :func:`dispatch`, but wait and return the :class:`Result`.

    Example:
        >>> import qflow
        >>> @qflow.lattice
        ... def flow(x):
        ...     return x
        >>> qflow.dispatch_sync(flow)(5).result
        5
    """
    lat = _as_lattice(lattice, "dispatch_sync")

    def run(*args: Any, **kwargs: Any) -> Result:
        return get_result(_launch(lat, args, kwargs), wait=True)

    return run


def _row(rt: _Runtime, dispatch_id: str) -> dict[str, Any]:
    if not isinstance(dispatch_id, str):
        raise QflowInputError(
            f"A dispatch id is the string qflow.dispatch returned; got "
            f"{type(dispatch_id).__name__} {dispatch_id!r}.")
    row = rt.store.get_dispatch(dispatch_id)
    if row is None:
        raise DispatchNotFoundError(
            f"No dispatch {dispatch_id!r} in the results store at {rt.settings.db_path}. "
            "Check the id (`qflow list` shows recent ones) and that QFLOW_HOME is the one "
            "the dispatch was made with.")
    return row


def _finished(row: dict[str, Any]) -> bool:
    # cancel() sets the status at once; the dispatcher sets end_time once it has settled.
    return Status(row["status"]).is_final and row.get("end_time") is not None


def get_result(dispatch_id: str, wait: bool = False, status_only: bool = False,
               timeout: float | None = None) -> Result | dict[str, str]:
    """The :class:`Result` of a dispatch, from any process.

    Args:
        dispatch_id: what :func:`dispatch` returned.
        wait: block until the dispatch is COMPLETED, FAILED or CANCELLED.
        status_only: return only ``{"id": ..., "status": ...}``.
        timeout: with ``wait``, give up after this many seconds (TimeoutError).

    Raises:
        DispatchNotFoundError: no dispatch has this id.
    """
    rt = _runtime()
    row = _row(rt, dispatch_id)
    if wait and not _finished(row):
        deadline = None if timeout is None else time.monotonic() + timeout
        local = rt.local.get(dispatch_id)
        if local is not None and not local.done.wait(timeout):
            raise TimeoutError(f"Dispatch {dispatch_id} still running after {timeout} s.")
        pause = 0.002
        while not _finished(row := _row(rt, dispatch_id)):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Dispatch {dispatch_id} still running after {timeout} s.")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
    if status_only:
        return {"id": dispatch_id, "status": Status(row["status"])}
    return Result(rt.store, row)


def cancel(dispatch_id: str, task_ids: Iterable[int] | int | None = None) -> str:
    """Cancel a dispatch at once, or only the nodes ``task_ids`` (their dependants never run).

    Returns:
        A short message saying what was cancelled.
    """
    rt = _runtime()
    row = _row(rt, dispatch_id)
    if isinstance(task_ids, int):
        task_ids = [task_ids]
    ids = None if task_ids is None else sorted(set(task_ids))
    if ids is not None:
        known = {r["node_id"] for r in rt.store.get_nodes(dispatch_id)}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise QflowInputError(
                f"Dispatch {dispatch_id} has no nodes {unknown}; valid node ids are "
                f"0..{max(known)}. See `qflow show {dispatch_id}`.")
    if Status(row["status"]).is_final:
        return f"Dispatch {dispatch_id} already ended {row['status']}; nothing to cancel."
    if ids is None:
        rt.store.update_dispatch(dispatch_id, status=Status.CANCELLED)
    else:
        rt.store.update_nodes(dispatch_id, [(i, {"status": Status.CANCELLED}) for i in ids])
    local = rt.local.get(dispatch_id)
    if local is not None:
        local.cancel(ids)
    elif rt.service() is not None:
        ray.get(rt.service().cancel.remote(dispatch_id, ids))
    what = "dispatch" if ids is None else f"nodes {ids} of dispatch"
    return f"Cancelled {what} {dispatch_id}."


def redispatch(dispatch_id: str, replace_electrons: dict[str, Electron] | None = None,
               reuse_previous_results: bool = False) -> Callable[..., str]:
    """Dispatch an earlier lattice again, optionally with some electrons replaced.

    Called with no arguments, the returned function reuses the original args and
    kwargs (both of them: Covalent drops the kwargs when electrons are replaced).

    Args:
        dispatch_id: the dispatch to repeat.
        replace_electrons: ``{electron name: new electron}``.
        reuse_previous_results: take the outputs of unchanged completed nodes (same
            function, same inputs, same ancestors) instead of running them again.
    """
    rt = _runtime()
    row = _row(rt, dispatch_id)
    if not row.get("graph"):
        raise QflowInputError(
            f"Dispatch {dispatch_id} is a sublattice; redispatch its top-level dispatch "
            f"{row.get('parent_id')} instead.")
    saved = cloudpickle.loads(row["graph"])
    lat: Lattice = saved["lattice"]
    old_inputs = cloudpickle.loads(row["inputs"])
    replace = dict(replace_electrons or {})
    bad = {k: v for k, v in replace.items() if not callable(v)}
    if bad:
        raise QflowInputError(
            f"replace_electrons maps electron names to electrons; got {bad!r}.")

    def submit(*args: Any, **kwargs: Any) -> str:
        if not args and not kwargs:
            args, kwargs = old_inputs["args"], old_inputs["kwargs"]
        return _launch(lat, tuple(args), dict(kwargs), replace=replace,
                       reuse_from=dispatch_id if reuse_previous_results else None)

    return submit
