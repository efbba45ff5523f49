"""The dispatcher service: a detached Ray actor on the ``qflow start`` head that runs
dispatches on its threads, so they outlive the client, and resumes them after a restart.
(Starting and stopping the head is :mod:`qflow.runtime.service`.)
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import psutil
import ray

from qflow.core.stored import stored_graph
from qflow.runtime.head_state import ServiceState
from qflow.runtime.heap import settle_heap
from qflow.settings import Settings, parse_flag
from qflow.store.base import now_iso

__all__ = ["WAITERS", "DispatcherService"]

#: Threads of the service that may hold a waiter at once (its "waits" group).
WAITERS = 32


class DispatcherService:
    """Runs dispatches on threads inside a detached actor, so they survive the client.

    Ray restarts the actor if its process dies (``max_restarts=-1``). Each
    incarnation records its pid in ``service.json`` and resumes every dispatch that
    a previous one left unfinished in the store: completed nodes keep their records
    and outputs and are not run again; the rest run.

    Args:
        home: the ``QFLOW_HOME`` whose store this service serves, to resume from.
    """

    def __init__(self, home: str | None = None) -> None:
        self._stores: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}
        self._triggers: dict[str, list[Any]] = {}
        if parse_flag(os.environ.get("QFLOW_FREEZE_GC"), "QFLOW_FREEZE_GC", default=True):
            settle_heap()  # this process only dispatches: keep its full collections cheap
        if home is not None:
            settings = Settings(home=Path(home))
            state = ServiceState.load(settings)
            if state is not None:
                pid = os.getpid()
                state.update(service_pid=pid, service_create_time=psutil.Process(pid).create_time())
                state.save(settings)
            threading.Thread(
                target=self._resume_all,
                args=(str(settings.db_path),),
                name="qflow-resume",
                daemon=True,
            ).start()

    def ping(self) -> int:
        return os.getpid()

    def _store(self, db_path: str) -> tuple[Any, Any]:
        from qflow.runtime.lease import Heartbeat
        from qflow.store.sqlite import SQLiteStore

        if db_path not in self._stores:
            store = SQLiteStore(db_path)
            self._stores[db_path] = (store, Heartbeat(store, role="service"))
        return self._stores[db_path]

    def _start(
        self,
        db_path: str,
        dispatch_id: str,
        graph: Any,
        reuse: dict[int, bytes],
        resumed: bool = False,
    ) -> None:
        from qflow.core.dispatcher import Dispatcher

        store, heartbeat = self._store(db_path)
        dispatcher = Dispatcher(
            store, dispatch_id, graph, reuse, heartbeat=heartbeat, resumed=resumed
        )
        self._runs[dispatch_id] = dispatcher

        def run() -> None:
            try:
                dispatcher.run()
            finally:  # the store has the outcome; drop the outputs the dispatcher holds
                self._runs.pop(dispatch_id, None)

        threading.Thread(target=run, name=f"qflow-{dispatch_id}", daemon=True).start()

    def run(self, db_path: str, dispatch_id: str, graph: Any, reuse: dict[int, bytes]) -> None:
        # The graph arrives through Ray's object store: its big arguments are shared
        # memory there, never another copy in the sender or in this actor.
        self._start(db_path, dispatch_id, graph, reuse)

    # ---------------------------------------------------------------- triggers
    def add_triggers(self, db_path: str, dispatch_id: str) -> int:
        """Watch the triggers of the lattice recorded as ``dispatch_id``; each firing
        starts a new dispatch of it. Returns how many triggers now watch."""
        from qflow.store.base import loads

        store, heartbeat = self._store(db_path)
        heartbeat.claim(dispatch_id)  # the service, not the script, now answers for it
        from qflow.core.status import Status

        store.update_dispatch(
            dispatch_id,
            status=Status.RUNNING,  # RUNNING: watching
            start_time=now_iso(),
        )
        saved = loads((store.get_dispatch(dispatch_id) or {})["graph"])
        triggers = list(saved["lattice"].triggers)
        for trigger in triggers:
            trigger.lattice_dispatch_id = dispatch_id
            trigger.attach(lambda: self._fire(db_path, dispatch_id))
            threading.Thread(
                target=self._observe,
                args=(db_path, dispatch_id, trigger),
                name=f"qflow-trigger-{dispatch_id}",
                daemon=True,
            ).start()
        self._triggers[dispatch_id] = triggers
        return len(triggers)

    def _observe(self, db_path: str, dispatch_id: str, trigger: Any) -> None:
        try:
            trigger.observe()
        except Exception as exc:  # a broken trigger ends its registration, saying why
            logging.getLogger("qflow").exception("trigger of %s failed", dispatch_id)
            self.stop_triggers(
                db_path, dispatch_id, error=f"{type(trigger).__name__} failed: {exc!r}"
            )

    def _fire(self, db_path: str, base_id: str) -> str:
        """Start a new dispatch of the lattice recorded as ``base_id``, same inputs."""
        import copy

        from qflow.core.launch import rebuild, record

        store, heartbeat = self._store(db_path)
        row = store.get_dispatch(base_id) or {}
        lattice = copy.copy(stored_graph(row).lattice)
        lattice.triggers = ()  # the new dispatch runs; it does not register again
        new = rebuild(row, lattice, tags=(f"trigger:{base_id[:8]}",))
        new_id = record(store, new, owner=heartbeat.owner)
        self._start(db_path, new_id, new.graph, {})
        return new_id

    def stop_triggers(self, db_path: str, dispatch_id: str, error: str | None = None) -> list[str]:
        """Stop watching; end the registration with the ids its triggers started."""
        from qflow.core.status import Status
        from qflow.core.task import dumps_value
        from qflow.core.text import value_text

        triggers = self._triggers.pop(dispatch_id, [])
        for trigger in triggers:
            trigger.stop()
        started = [i for t in triggers for i in t.new_dispatch_ids]
        store, heartbeat = self._store(db_path)
        heartbeat.release([dispatch_id])
        store.update_dispatch(
            dispatch_id,
            only_if_unfinished=True,
            status=Status.FAILED if error else Status.COMPLETED,
            result=dumps_value(started),
            result_text=value_text(started),
            error=error,
            end_time=now_iso(),
        )
        return started

    def _resume_all(self, db_path: str) -> None:
        """Pick up what a previous incarnation of this service left unfinished."""
        from qflow.core.status import Status
        from qflow.runtime.lease import owner_alive, owner_role

        store, _ = self._store(db_path)
        for row in store.unfinished():
            if owner_role(row.get("owner")) != "service" or owner_alive(row.get("owner")):
                continue
            dispatch_id = row["dispatch_id"]
            try:
                if row["status"] == Status.CANCELLED:
                    store.end_dispatch(dispatch_id, Status.CANCELLED, None)
                    continue
                stored = stored_graph(store.get_dispatch(dispatch_id) or {})
                if getattr(stored.lattice, "triggers", ()):  # a registration: watch again
                    self.add_triggers(db_path, dispatch_id)
                    continue
                graph = stored.build()
                done = {
                    r["node_id"]: r["output"]
                    for r in store.get_nodes(dispatch_id)
                    if r["status"] == Status.COMPLETED
                    and r["kind"] != "op"
                    and isinstance(r["output"], bytes)
                }
                self._start(db_path, dispatch_id, graph, done, resumed=True)
            except Exception as exc:  # one broken record must not stop the others
                store.end_dispatch(
                    dispatch_id,
                    Status.FAILED,
                    f"The restarted dispatcher service could not resume it: {exc!r}",
                )

    @ray.method(concurrency_group="waits")
    def wait(self, dispatch_id: str, timeout: float) -> bool:
        """Hold until this service's run of ``dispatch_id`` ends or ``timeout`` passes;
        False at once if this service does not run it.

        Runs in its own concurrency group (:data:`WAITERS` threads), so waiters never
        take the threads that start and cancel dispatches.
        """
        dispatcher = self._runs.get(dispatch_id)
        if dispatcher is None:
            return False
        dispatcher.done.wait(timeout)
        return True

    def cancel(self, dispatch_id: str, task_ids: list[int] | None) -> None:
        dispatcher = self._runs.get(dispatch_id)
        if dispatcher is not None:
            dispatcher.cancel(task_ids)
