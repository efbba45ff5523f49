"""What ``qflow start`` recorded under ``$QFLOW_HOME``, and whether it still runs.

Read by every process that needs the head's state (joining Ray, judging leases, the
CLI), without importing the service that writes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil

from qflow.settings import Settings

__all__ = ["ServiceState", "live_address", "same_process", "status", "write_private"]


class ServiceState(dict):
    """What ``qflow start`` wrote to ``$QFLOW_HOME/service.json``."""

    @classmethod
    def load(cls, settings: Settings) -> ServiceState | None:
        try:
            return cls(json.loads(settings.service_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @property
    def alive(self) -> bool:
        return same_process(self)

    @property
    def service_alive(self) -> bool:
        """Whether the dispatcher actor's process still runs."""
        if "service_pid" not in self:
            return False
        return same_process(
            {"pid": self["service_pid"], "create_time": self.get("service_create_time")}
        )

    def save(self, settings: Settings) -> None:
        write_private(settings.service_file, json.dumps(self).encode())


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (it may name addresses and pids)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def same_process(state: dict[str, Any]) -> bool:
    try:
        return psutil.Process(state["pid"]).create_time() == state["create_time"]
    except (psutil.Error, KeyError, TypeError):
        return False


def live_address(settings: Settings) -> str | None:
    """The Ray address of this QFLOW_HOME's running ``qflow start`` head, if any."""
    state = ServiceState.load(settings)
    return state["address"] if state and state.alive else None


def status(settings: Settings) -> dict[str, Any]:
    """Whether a head and its dispatcher service run for this QFLOW_HOME, and why not.

    Returns:
        ``running`` (both up), ``head`` and ``service`` (each up or not), ``home``,
        ``reason`` when something is down, and what ``qflow start`` recorded.
    """
    state = ServiceState.load(settings)
    info: dict[str, Any] = {"home": str(settings.home)}
    if state is None:
        reason = "no qflow head was started for this QFLOW_HOME"
        try:
            reason = (
                "the last `qflow start` failed: "
                + (settings.home / "last_start_error.txt").read_text().strip()
            )
        except OSError:
            pass
        return {**info, "running": False, "head": False, "service": False, "reason": reason}
    head, service = state.alive, state.service_alive
    info.update(
        state, home=str(settings.home), head=head, service=service, running=head and service
    )
    if not head:
        info["reason"] = (
            f"the head (pid {state['pid']}) has exited; see "
            f"{settings.home / 'head.log'}. Run `qflow stop` to clear it, then "
            "`qflow start`."
        )
    elif not service:
        info["reason"] = (
            f"the head runs, but its dispatcher service (pid "
            f"{state.get('service_pid')}) is dead, so dispatches cannot run. "
            "Restart with `qflow stop && qflow start`."
        )
    return info
