"""Early news of long-running nodes: that they started, and what they printed so far.

A node's record is otherwise written when it finishes. In each process that runs
nodes, one thread looks every half second at the nodes running there; one that has
run for over a second gets its start time and the tail of its stdout and stderr
written to the results store, and again at most every two seconds after that. Short
nodes cost a dictionary entry each, never a write.

Only a store that already exists at this process's ``QFLOW_HOME`` is written, and
only rows still RUNNING: a worker on another machine finds no store (or not this
dispatch) and writes nothing, and a finished node's record always wins.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qflow.store.base import iso_at

#: Seconds a node runs before its start is written, and between later writes.
FIRST_WRITE_S, NEXT_WRITE_S = 1.0, 2.0
#: Characters of each stream written while running (the full text comes at the end).
TAIL_CHARS = 64 * 1024


@dataclass
class _Running:
    dispatch_id: str
    node_id: int
    out: Any
    err: Any
    ray_node_id: str | None
    host: str | None = None
    inputs_text: str | None = None
    started: float = field(default_factory=time.time)
    written: float = 0.0


class _Reporter:
    def __init__(self) -> None:
        self._running: dict[int, _Running] = {}
        self._thread: threading.Thread | None = None
        self._store: Any = None
        self._no_store = False

    def begin(
        self,
        dispatch_id: str,
        node_id: int,
        out: Any,
        err: Any,
        ray_node_id: str | None,
        host: str | None = None,
    ) -> None:
        self._running[threading.get_ident()] = _Running(
            dispatch_id, node_id, out, err, ray_node_id, host
        )

    def inputs(self, text: str) -> None:
        entry = self._running.get(threading.get_ident())
        if entry is not None:
            entry.inputs_text = text
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="qflow-progress", daemon=True)
            self._thread.start()

    def end(self) -> None:
        self._running.pop(threading.get_ident(), None)

    def _open(self) -> Any:
        if self._store is None and not self._no_store:
            from qflow.settings import Settings
            from qflow.store.sqlite import SQLiteStore

            path = Settings.from_env().db_path
            if Path(path).is_file():  # never create a store where there is none
                self._store = SQLiteStore(path)
            else:
                self._no_store = True
        return self._store

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            now = time.time()
            for entry in list(self._running.values()):
                due = FIRST_WRITE_S if not entry.written else NEXT_WRITE_S
                if now - max(entry.started, entry.written) < due:
                    continue
                entry.written = now
                try:
                    store = self._open()
                    if store is None:  # no store here (another machine): nothing to tell
                        continue
                    store.note_progress(
                        entry.dispatch_id,
                        entry.node_id,
                        start_time=iso_at(entry.started),
                        ray_node_id=entry.ray_node_id,
                        host=entry.host,
                        inputs_text=entry.inputs_text,
                        stdout=entry.out.getvalue()[-TAIL_CHARS:],
                        stderr=entry.err.getvalue()[-TAIL_CHARS:],
                    )
                except Exception:  # progress is a courtesy: never disturb the node
                    pass


_reporter = _Reporter()
begin = _reporter.begin
inputs = _reporter.inputs
end = _reporter.end
