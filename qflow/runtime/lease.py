"""Who runs a dispatch, and how any reader tells that nothing runs it any more.

The process that runs a dispatch writes itself into the dispatch row as its owner
(host, pid and the process's start time, so a reused pid is not mistaken for it)
and refreshes a heartbeat while it runs. A reader on the same host checks the pid;
on another host it trusts the heartbeat for :data:`STALE_AFTER_S`. A dispatch whose
owner is gone is ended FAILED (or CANCELLED, if that was asked) with the reason,
and its unfinished nodes CANCELLED, by whichever reader notices first.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil

from qflow.core.status import Status
from qflow.store.base import ResultStore

#: Seconds between heartbeats of a running dispatch.
HEARTBEAT_S = 5.0
#: A dispatch owned on another host is orphaned after this long without a heartbeat.
STALE_AFTER_S = 60.0
#: A dead dispatcher service on a live head is given this long (since its last
#: heartbeat) for Ray to restart it, after which its dispatches are ended.
SERVICE_RESTART_GRACE_S = 30.0

_HOST = socket.gethostname()


def _create_time(pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.Error:
        return None


def owner_token(role: str = "client") -> str:
    """This process as a dispatch owner: ``role`` is ``client`` or ``service``."""
    pid = os.getpid()
    return json.dumps({"host": _HOST, "pid": pid, "started": _create_time(pid), "role": role})


def _info(owner: str | None) -> dict[str, Any]:
    try:
        info = json.loads(owner or "")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def owner_role(owner: str | None) -> str | None:
    """``"client"`` or ``"service"``, or None for a row without an owner."""
    return _info(owner).get("role")


def owner_alive(owner: str | None) -> bool:
    """Whether the owner process still runs (on another host: assumed, see reap)."""
    info = _info(owner)
    if info.get("host") != _HOST:
        return bool(info)
    return _create_time(int(info.get("pid", -1))) == info.get("started")


def gone_reason(owner: str | None, heartbeat: float | None, now: float | None = None) -> str | None:
    """Why the owner of an unfinished dispatch cannot finish it, or None if it may."""
    info = _info(owner)
    if not info:
        return None  # not claimed yet (or written by a qflow without owners): leave it
    who = (
        "the qflow dispatcher service"
        if info.get("role") == "service"
        else "the process that dispatched it"
    )
    where = f"pid {info.get('pid')} on {info.get('host')}"
    if info.get("host") == _HOST:
        if owner_alive(owner):
            return None
        advice = (
            "Restart the service with `qflow stop && qflow start`, then redispatch."
            if info.get("role") == "service"
            else "Run `qflow start` first so that dispatches outlive the script, or keep the "
            "script alive until get_result(..., wait=True) returns."
        )
        return (
            f"Nothing runs this dispatch any more: {who} ({where}) exited or was killed. {advice}"
        )
    age = (now or time.time()) - (heartbeat or 0.0)
    if age > STALE_AFTER_S:
        return (
            f"Nothing runs this dispatch any more: {who} ({where}) has not been heard "
            f"from for {age:.0f} s. Redispatch it."
        )
    return None


def service_verdict(store: ResultStore, row: dict[str, Any]) -> tuple[str, str | None]:
    """For a dispatch the ``qflow start`` service ran: ``("running", None)`` while a
    service runs or is being restarted by Ray (it resumes the dispatch),
    ``("paused", why)`` while no head runs (the next ``qflow start`` resumes it), or
    ``("gone", why)`` when the head runs but its service stayed dead."""
    if owner_alive(row.get("owner")):
        return "running", None
    path = getattr(store, "path", None)
    if not path or path == ":memory:":
        return "gone", "its dispatcher service is gone"
    from pathlib import Path

    from qflow.runtime.head_state import status
    from qflow.settings import Settings

    home = Path(path).parent
    info = status(Settings(home=home))
    if info["running"]:
        return "running", None
    if not info["head"]:
        return "paused", (
            f"it ran on the qflow head for {home}, which is not running now; "
            "`qflow start` resumes it (completed nodes are kept), "
            "`qflow cancel` ends it"
        )
    age = time.time() - (row.get("heartbeat") or 0.0)
    if age < SERVICE_RESTART_GRACE_S:
        return "running", None
    return "gone", (
        f"Nothing runs this dispatch any more: the qflow dispatcher service died "
        f"and was not restarted within {SERVICE_RESTART_GRACE_S:.0f} s. Restart it "
        "with `qflow stop && qflow start` (which resumes it)."
    )


def reap(store: ResultStore, row: dict[str, Any]) -> bool:
    """End ``row``'s dispatch if its owner is gone; True if this call ended it."""
    if row.get("end_time") is not None:
        return False
    if owner_role(row.get("owner")) == "service":
        verdict, reason = service_verdict(store, row)
        if verdict != "gone":
            return False
    else:
        reason = gone_reason(row.get("owner"), row.get("heartbeat"))
    if reason is None:
        return False
    status = Status.CANCELLED if row.get("status") == Status.CANCELLED else Status.FAILED
    return store.end_dispatch(row["dispatch_id"], status, reason)


def reap_all(store: ResultStore) -> int:
    """End every unfinished dispatch in ``store`` whose owner is gone; how many were."""
    return sum(reap(store, row) for row in store.unfinished())


class Heartbeat:
    """Claims dispatches for this process and keeps their heartbeat fresh.

    One daemon thread per store, started on the first claim.
    """

    def __init__(self, store: ResultStore, role: str = "client") -> None:
        self.store, self.owner = store, owner_token(role)
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def claim(self, dispatch_id: str) -> None:
        with self._lock:
            self._ids.add(dispatch_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._beat, name="qflow-heartbeat", daemon=True
                )
                self._thread.start()
        self.store.claim([dispatch_id], self.owner, time.time())

    def release(self, dispatch_ids: Iterable[str]) -> None:
        with self._lock:
            self._ids.difference_update(dispatch_ids)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self._lock:
                ids = sorted(self._ids)
            try:
                self.store.claim(ids, self.owner, time.time())
            except Exception:  # a store error now must not kill the heartbeat for good
                continue
