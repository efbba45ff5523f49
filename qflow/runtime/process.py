"""This process's side of running dispatches: its results store, its connection to
Ray, and the :class:`Runner` that runs what it dispatches.

A recorded dispatch is handed to one runner: :class:`InProcess` (the dispatcher runs
on a thread here, and ends with this process) or :class:`HeadService` (the
``qflow start`` head's dispatcher service, which outlives it). :func:`current` gives
this process's :class:`ProcessRuntime` for the settings in force.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import dataclasses
import sys
import threading
from typing import Any

import ray

from qflow.core.dispatcher import Dispatcher
from qflow.core.graph import Graph
from qflow.core.status import Status
from qflow.exceptions import ClusterError
from qflow.runtime.head_state import live_address
from qflow.runtime.headwatch import HeadWatch
from qflow.runtime.heap import settle_heap
from qflow.runtime.lease import Heartbeat
from qflow.runtime.ray_cluster import ensure_ray, find_service, same_address
from qflow.settings import Settings
from qflow.store.sqlite import SQLiteStore

__all__ = ["EXITED", "HeadService", "InProcess", "ProcessRuntime", "Runner", "current"]

#: Why a dispatch ended when the process running it exited first.
EXITED = (
    "The dispatching process exited before the dispatch finished. Run `qflow start` "
    "first so that dispatches outlive the script, or wait for them with "
    "get_result(..., wait=True)."
)


class Runner(abc.ABC):
    """Runs recorded dispatches. Only :meth:`start` must be defined."""

    @abc.abstractmethod
    def start(self, dispatch_id: str, graph: Graph, reuse: dict[int, bytes]) -> None:
        """Start running the recorded dispatch ``dispatch_id`` of ``graph``, taking the
        outputs in ``reuse`` (node id -> pickled output) instead of running those nodes."""

    def cancel(self, dispatch_id: str, task_ids: list[int] | None) -> None:  # noqa: B027
        """Stop some nodes (or all) of a dispatch this runner runs; by default the
        CANCELLED record, which every dispatcher reads, is all it takes."""


class InProcess(Runner):
    """Dispatchers on threads of this process: they end with it (see :meth:`abandon`)."""

    def __init__(self, store: SQLiteStore, heartbeat: Heartbeat) -> None:
        self.store, self.heartbeat = store, heartbeat
        #: The dispatches running here, by id.
        self.dispatchers: dict[str, Dispatcher] = {}

    def start(self, dispatch_id: str, graph: Graph, reuse: dict[int, bytes]) -> None:
        dispatcher = Dispatcher(self.store, dispatch_id, graph, reuse, heartbeat=self.heartbeat)
        self.dispatchers[dispatch_id] = dispatcher

        def run() -> None:
            try:
                dispatcher.run()
            except BaseException:  # kept as dispatcher.crash: get_result raises it
                pass
            finally:
                # The store has the outcome; keeping the dispatcher would keep every output.
                # (A crashed one stays, so that waiting on it reports the crash.)
                if dispatcher.crash is None:
                    self.dispatchers.pop(dispatch_id, None)

        threading.Thread(target=run, name=f"qflow-{dispatch_id}", daemon=True).start()

    def cancel(self, dispatch_id: str, task_ids: list[int] | None) -> None:
        dispatcher = self.dispatchers.get(dispatch_id)
        if dispatcher is not None:
            dispatcher.cancel(task_ids)

    def abandon(self, reason: str = EXITED) -> list[str]:
        """End the unfinished dispatches running here FAILED with ``reason``: at exit
        they die with this process, and after the Ray head is lost they cannot go on.
        Returns their ids."""
        ended = []
        for dispatch_id, dispatcher in list(self.dispatchers.items()):
            if not dispatcher.done.is_set():
                dispatcher.abandon()
                self.store.end_dispatch(dispatch_id, Status.FAILED, reason)
                ended.append(dispatch_id)
        return ended


class HeadService(Runner):
    """The ``qflow start`` head's dispatcher service (a detached Ray actor)."""

    def __init__(self, actor: Any, store: SQLiteStore, settings: Settings) -> None:
        self.actor, self.store, self.settings = actor, store, settings

    def start(self, dispatch_id: str, graph: Graph, reuse: dict[int, bytes]) -> None:
        try:
            ray.get(self.actor.run.remote(str(self.settings.db_path), dispatch_id, graph, reuse))
        except ray.exceptions.RayError as exc:
            self.store.end_dispatch(
                dispatch_id, Status.FAILED, f"The qflow dispatcher service did not take it: {exc}"
            )
            raise ClusterError(
                f"The qflow dispatcher service did not take dispatch {dispatch_id}: {exc}. "
                "Check it with `qflow status`; restart with `qflow stop && qflow start`."
            ) from exc

    def cancel(self, dispatch_id: str, task_ids: list[int] | None) -> None:
        ray.get(self.actor.cancel.remote(dispatch_id, task_ids))

    def wait(self, dispatch_id: str, timeout: float) -> bool:
        """Return when the service's run of ``dispatch_id`` ends, or after ``timeout``.

        False at once when the service does not run it (any more) or cannot be
        reached: the store, which the caller then polls, has the answer.
        """
        try:
            held: bool = ray.get(
                self.actor.wait.remote(dispatch_id, timeout), timeout=timeout + 5.0
            )
        except ray.exceptions.RayError:  # GetTimeoutError too
            return False
        return held

    def add_triggers(self, dispatch_id: str) -> None:
        ray.get(self.actor.add_triggers.remote(str(self.settings.db_path), dispatch_id))

    def stop_triggers(self, dispatch_id: str) -> list[str]:
        stopped: list[str] = ray.get(
            self.actor.stop_triggers.remote(str(self.settings.db_path), dispatch_id)
        )
        return stopped


class ProcessRuntime:
    """Per-process state for one results store: the store, this process's lease on
    what it runs, its in-process runner, and (once connected) the head's service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = SQLiteStore(settings.db_path)
        self.heartbeat = Heartbeat(self.store)
        self.in_process = InProcess(self.store, self.heartbeat)
        self._service: HeadService | None = None
        self._ray_checked = False
        #: How this process reached Ray: "embedded", "joined" or "existing".
        self.mode = ""
        self._lock = threading.Lock()

    @property
    def local(self) -> dict[str, Dispatcher]:
        """The dispatches this process runs itself, by id."""
        return self.in_process.dispatchers

    def service(self) -> HeadService | None:
        """Connect to Ray (once) and return the head's dispatcher service, if any.

        Raises:
            ClusterError: the cluster is a ``qflow start`` head whose dispatcher service
                is gone, or this process is connected to another Ray. Dispatches then fail
                here rather than silently running in this process, where they would die
                with it.
        """
        with self._lock:
            if not self._ray_checked:
                self.mode = ensure_ray(self.settings)
                _register_exit_hook()
                _watch_head()
                if self.settings.freeze_gc:
                    settle_heap()
                if self.mode != "embedded":
                    self._service = self._found()
                self._ray_checked = True
            head = live_address(self.settings)
            if self._service is None and head is not None:
                self._service = self._found()
                connected = ray.get_runtime_context().gcs_address
                if self._service is None and not same_address(connected, head):
                    raise ClusterError(
                        f"This process is connected to the Ray at {connected}, which it "
                        f"started or joined itself (ray.init() ran before qflow), not to "
                        f"the qflow head at {head} that `qflow start` runs for "
                        f"{self.settings.home}. Dispatch from a process that has not called "
                        "ray.init(), call ray.shutdown() first, or ray.init(address="
                        f"{head!r}) to use the head."
                    )
                if self._service is None:
                    raise ClusterError(
                        f"The qflow head for {self.settings.home} is running but its "
                        "dispatcher service is gone, so nothing could run this dispatch "
                        "beyond this script. Restart it with `qflow stop && qflow start`."
                    )
        return self._service

    def connected_service(self) -> HeadService | None:
        """The head's service, if this process has already connected to it (it never
        connects here: a process that only reads results must not start a Ray)."""
        return self._service

    def _found(self) -> HeadService | None:
        actor = find_service()
        return None if actor is None else HeadService(actor, self.store, self.settings)

    def runner(self) -> Runner:
        """Where a new dispatch runs: the head's service if there is one, else here."""
        return self.service() or self.in_process

    def start(self, dispatch_id: str, graph: Graph, reuse: dict[int, bytes]) -> None:
        runner = self.runner()
        try:
            runner.start(dispatch_id, graph, reuse)
        except ClusterError:
            if runner is self._service:
                self._service = None  # looked up again next time
            raise


_runtimes: dict[str, ProcessRuntime] = {}
_runtimes_lock = threading.Lock()
#: What ``qflow.init`` chose, applied over the environment's settings.
_chosen: dict[str, Any] = {}


def current() -> ProcessRuntime:
    """This process's runtime for the store the settings in force name."""
    settings = dataclasses.replace(Settings.from_env(), **_chosen)
    key = str(settings.db_path)
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = ProcessRuntime(settings)
        return _runtimes[key]


def choose(chosen: dict[str, Any]) -> ProcessRuntime:
    """Apply ``qflow.init``'s choices (they replace earlier ones) and return the runtime."""
    with _runtimes_lock:
        _chosen.clear()
        _chosen.update(chosen)
        _runtimes.clear()
    return current()


def chosen() -> dict[str, Any]:
    """What ``qflow.init`` chose in this process."""
    return dict(_chosen)


def abandon_all(reason: str = EXITED) -> list[str]:
    """End every runtime's unfinished in-process dispatches FAILED with ``reason``;
    their ids."""
    ended: list[str] = []
    for rt in list(_runtimes.values()):
        try:
            ended += rt.in_process.abandon(reason)
        except Exception:  # one store's failure (gone at interpreter exit, say) must not
            pass  # keep the others unrecorded
    return ended


def _on_exit() -> None:
    ended = abandon_all()
    if ended:  # one line, so that a script's user knows what did not finish, and why
        shown = ", ".join(ended[:3]) + (f" and {len(ended) - 3} more" if len(ended) > 3 else "")
        with contextlib.suppress(Exception):  # stderr may be closed at exit
            print(
                f"qflow: this script exited while {len(ended)} dispatch(es) still ran "
                f"({shown}); they are recorded FAILED. Run `qflow start` first to keep "
                "dispatches running after the script ends.",
                file=sys.stderr,
                flush=True,
            )
    # After the dispatchers stopped submitting, before Ray's own exit hook shuts it
    # down: a thread that calls Ray after that makes Ray end the process with an error.
    from qflow.core import completions

    completions.close()


_exit_hook_registered = False
_head_watch: HeadWatch | None = None


def _watch_head() -> None:
    """In a driver, watch the Ray head it is connected to (one watch per process)."""
    global _head_watch
    context = ray.get_runtime_context()
    # A Ray worker (running a sublattice) dies with its head. (get_task_id() would tell
    # too, but logs a warning in a driver.)
    if context.worker.mode == ray.WORKER_MODE:
        return
    address = context.gcs_address
    if _head_watch is not None and _head_watch.address == address and _head_watch.watching:
        return
    if _head_watch is not None:
        _head_watch.stop()

    def still_current() -> bool:
        return ray.is_initialized() and ray.get_runtime_context().gcs_address == address

    _head_watch = HeadWatch(address, _head_gone, still_current=still_current)
    _head_watch.start()


def _head_gone(address: str) -> None:
    abandon_all(
        f"The Ray head at {address} stopped answering while this dispatch ran (it was "
        "stopped, or its processes or machine died), so its electrons cannot finish; Ray "
        "ends this process about a minute after losing its head. Start the head again "
        "and redispatch (qflow.redispatch(id, reuse_previous_results=True) skips the "
        "electrons that completed), or dispatch under `qflow start`, whose dispatches "
        "pause when its head stops and resume when it starts again."
    )


def _register_exit_hook() -> None:
    """Register :func:`_on_exit` after ``ray.init`` registered Ray's own shutdown, so
    that (atexit runs last-in, first-out) unfinished dispatches are ended while Ray is
    still up, before their tasks die with it and the dispatcher writes their failure."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(_on_exit)
