"""A persistent local head (``qflow start``) whose dispatcher outlives the client.

``qflow start`` runs ``ray start --head --block`` in a session of its own and a
detached, named dispatcher actor on it. ``qflow stop`` stops exactly those
processes, by pid; it never runs ``ray stop``, which would kill every Ray on the
machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import ray

from qflow._cluster import SERVICE_NAME, SERVICE_NAMESPACE, enable_token_auth, ray_cli
from qflow.exceptions import ClusterError
from qflow.settings import Settings

__all__ = ["DispatcherService", "ServiceState", "start", "status", "stop"]


class DispatcherService:
    """Runs dispatches on threads inside a detached actor, so they survive the client."""

    def __init__(self) -> None:
        self._stores: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}

    def ping(self) -> int:
        return os.getpid()

    def run(self, db_path: str, dispatch_id: str, graph_blob: bytes,
            reuse: dict[int, bytes]) -> None:
        from qflow._dispatcher import Dispatcher
        from qflow.store.sqlite import SQLiteStore

        store = self._stores.get(db_path)
        if store is None:
            store = self._stores[db_path] = SQLiteStore(db_path)
        dispatcher = Dispatcher(store, dispatch_id, cloudpickle.loads(graph_blob), reuse)
        self._runs[dispatch_id] = dispatcher

        def run() -> None:
            try:
                dispatcher.run()
            finally:  # the store has the outcome; drop the outputs the dispatcher holds
                self._runs.pop(dispatch_id, None)

        threading.Thread(target=run, daemon=True).start()

    def cancel(self, dispatch_id: str, task_ids: list[int] | None) -> None:
        dispatcher = self._runs.get(dispatch_id)
        if dispatcher is not None:
            dispatcher.cancel(task_ids)


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
        return _same_process(self)


def _same_process(state: ServiceState) -> bool:
    try:
        return psutil.Process(state["pid"]).create_time() == state["create_time"]
    except psutil.Error:
        return False


def live_address(settings: Settings) -> str | None:
    """The Ray address of this QFLOW_HOME's running ``qflow start`` head, if any."""
    state = ServiceState.load(settings)
    return state["address"] if state and state.alive else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(settings: Settings, num_cpus: int | None = None, timeout: float = 90.0) -> ServiceState:
    """Start the head and the dispatcher actor; return what was recorded.

    Raises:
        ClusterError: one is already running for this QFLOW_HOME, or it did not come up.
    """
    old = ServiceState.load(settings)
    if old is not None and old.alive:
        raise ClusterError(
            f"A qflow head is already running for {settings.home} (pid {old['pid']}, "
            f"address {old['address']}). Use it, or run `qflow stop` first.")
    settings.home.mkdir(parents=True, exist_ok=True)
    ray_bin = ray_cli()
    port = _free_port()
    cmd = [ray_bin, "start", "--head", "--block", f"--port={port}",
           "--include-dashboard=false", "--disable-usage-stats"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    log_path = settings.home / "head.log"
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")  # noqa: SIM115 - the head keeps it open
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    from ray._private.services import get_node_ip_address

    address = f"{get_node_ip_address()}:{port}"
    state = ServiceState(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(),
                         address=address, home=str(settings.home),
                         started_at=datetime.now(UTC).isoformat(), pids=[proc.pid])
    settings.service_file.write_text(json.dumps(state))
    try:
        _wait_for_head(proc, log_path, log_offset, timeout)
        _start_actor(address)
    except Exception as exc:
        stop(settings)
        raise ClusterError(
            f"The qflow head did not come up: {exc}. See {settings.home / 'head.log'}.") from exc
    state["pids"] = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(True))]
    settings.service_file.write_text(json.dumps(state))
    return state


def _wait_for_head(proc: subprocess.Popen, log_path: Path, offset: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"`ray start` exited with {proc.returncode}")
        with open(log_path, "rb") as f:
            f.seek(offset)
            if b"Ray runtime started" in f.read():
                return
        time.sleep(0.2)
    raise ClusterError(f"`ray start` did not report a running head within {timeout} s")


def _start_actor(address: str) -> None:
    enable_token_auth()
    for attempt in range(5):
        try:
            ray.init(address=address, namespace=SERVICE_NAMESPACE, log_to_driver=False)
            break
        except ConnectionError:
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    try:
        actor = ray.remote(DispatcherService).options(
            name=SERVICE_NAME, namespace=SERVICE_NAMESPACE, lifetime="detached",
            max_concurrency=64, num_cpus=0, get_if_exists=True).remote()
        ray.get(actor.ping.remote(), timeout=120)
    finally:
        ray.shutdown()


def stop(settings: Settings, timeout: float = 30.0) -> list[int]:
    """Stop what :func:`start` started, by pid; return the pids that were stopped."""
    state = ServiceState.load(settings)
    if state is None:
        return []
    procs: dict[int, psutil.Process] = {}
    if _same_process(state):
        main = psutil.Process(state["pid"])
        procs[main.pid] = main
        for child in main.children(recursive=True):
            procs[child.pid] = child
    for pid in state.get("pids", []):
        if pid not in procs:
            try:
                p = psutil.Process(pid)
                # Only a process still in the head's session is one we started.
                if os.getsid(pid) == state["pid"]:
                    procs[pid] = p
            except (psutil.Error, ProcessLookupError):
                pass
    if state["pid"] in procs:
        try:
            os.kill(state["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    _forget_default_address(state["address"])
    settings.service_file.unlink(missing_ok=True)
    return sorted(procs)


def _forget_default_address(address: str) -> None:
    """Remove Ray's pointer to our head, as ``ray stop`` would, but only if it is ours.

    ``ray start`` writes it; a later plain ``ray.init()`` would try to join the
    dead head through it instead of starting a fresh local Ray.
    """
    try:
        from ray._common.utils import get_ray_address_file

        pointer = Path(get_ray_address_file(None))
        if pointer.read_text().strip() == address:
            pointer.unlink()
    except (ImportError, OSError):  # a Ray without the pointer file: nothing to forget
        pass


def status(settings: Settings) -> dict[str, Any]:
    """Whether a head runs for this QFLOW_HOME, and where."""
    state = ServiceState.load(settings)
    if state is None or not state.alive:
        return {"running": False, "home": str(settings.home)}
    return {"running": True, **state}
