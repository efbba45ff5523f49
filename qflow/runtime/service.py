"""A persistent local head (``qflow start``) whose dispatcher outlives the client.

``qflow start`` runs ``ray start --head --block`` in a session of its own and a
detached, named dispatcher actor on it. ``qflow stop`` stops exactly those
processes, by pid; it never runs ``ray stop``, which would kill every Ray on the
machine.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import psutil
import ray

from qflow.core.polling import wait_until
from qflow.core.text import url_host
from qflow.exceptions import ClusterError
from qflow.runtime.dispatcher_service import WAITERS, DispatcherService
from qflow.runtime.head_state import ServiceState, same_process, status, write_private
from qflow.runtime.ray_cluster import (
    SERVICE_NAME,
    SERVICE_NAMESPACE,
    enable_token_auth,
    node_ip,
    quiet_ray,
    ray_address_file,
    ray_cli,
    ray_system_env,
)
from qflow.settings import Settings
from qflow.store.base import now_iso

__all__ = ["DispatcherService", "ServiceState", "start", "status", "stop"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    settings: Settings,
    num_cpus: int | None = None,
    resources: tuple[tuple[str, float], ...] = (),
    timeout: float = 90.0,
    ui: tuple[str, int] | None = None,
    listen: tuple[str, int] | None = None,
    tls: tuple[str, str] | None = None,
    address: str | None = None,
) -> ServiceState:
    """Start the head and the dispatcher actor, check both stay up, and record them;
    with ``ui=(host, port)``, also ``qflow ui`` beside them (its URL is in ``ui_url``);
    with ``listen=(host, port)``, the qflow server (UI and API; ``server_url``), over
    HTTPS with ``tls=(certfile, keyfile)``. With ``address``, no head is started:
    the service attaches to the Ray cluster there, from one of its nodes.

    Raises:
        ClusterError: one is already running for this QFLOW_HOME, or it did not come
            up (the message has the reason and the path of the head's log).
    """
    old = ServiceState.load(settings)
    if old is not None and old.alive:
        raise ClusterError(
            f"A qflow head is already running for {settings.home} (pid {old['pid']}, "
            f"address {old['address']}). Use it, or run `qflow stop` first."
        )
    from qflow.store.sqlite import SQLiteStore

    SQLiteStore(settings.db_path)  # a broken store fails here, not inside the service
    if address is not None:
        return _attach(settings, address, ui=ui, listen=listen, tls=tls)
    log_path = settings.home / "head.log"
    announced = _read_default_address()
    # The port is free when chosen but may be taken before the head binds it (Ray's own
    # components pick random ports too): a head that fails on a taken port is retried.
    failure: ClusterError | None = None
    for attempt in range(3):
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        port = _free_port()
        proc = _spawn_head(settings, port, num_cpus, resources, log_path)
        try:
            _wait_for_head(proc, log_path, log_offset, timeout)
            failure = None
            break
        except ClusterError as exc:
            failure = exc
            if attempt == 2 or not _port_taken(log_path, log_offset):
                break  # reported below, with the head's log
            proc.wait(30)
    address = f"{node_ip()}:{port}"
    state = ServiceState(
        pid=proc.pid,
        create_time=_create_time(proc.pid),
        address=address,
        home=str(settings.home),
        started_at=now_iso(),
        pids=[proc.pid],
        resources=dict(resources),
    )
    state.save(settings)
    try:
        if failure is not None:
            raise failure
        # `ray start` announced this head in Ray's machine-wide address file, where any
        # script (of any QFLOW_HOME) would join it. It is found through service.json
        # instead, so put back what the file said before.
        _restore_default_address(address, announced)
        service_pid = _start_actor(address, settings)
        state["service_pid"] = service_pid
        state["service_create_time"] = psutil.Process(service_pid).create_time()
        # A head can report "started" and die a moment later (a port taken, a raylet
        # that cannot start): only call it up once both are still alive.
        time.sleep(1.0)
        if proc.poll() is not None:
            raise ClusterError(f"`ray start` exited with {proc.returncode} just after starting")
        if not state.service_alive:
            raise ClusterError("the dispatcher service died just after starting")
        if ui is not None:
            state.update(_start_ui(settings, *ui))
        if listen is not None:
            state.update(_start_server(settings, *listen, tls=tls))
    except Exception as exc:
        state["last_error"] = str(exc)
        stop(settings)
        write_private(settings.home / "last_start_error.txt", f"{now_iso()} {exc}".encode())
        tail = _log_tail(log_path, log_offset)
        raise ClusterError(
            f"The qflow head did not come up: {exc}. Its log is {log_path}"
            + (f"; it ends with:\n{tail}" if tail else ".")
        ) from exc
    (settings.home / "last_start_error.txt").unlink(missing_ok=True)
    state["pids"] = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(True))]
    state.save(settings)
    return state


def _spawn_head(
    settings: Settings,
    port: int,
    num_cpus: int | None,
    resources: tuple[tuple[str, float], ...],
    log_path: Path,
) -> subprocess.Popen:
    cmd = [
        ray_cli(),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if resources:
        cmd.append(f"--resources={json.dumps(dict(resources))}")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:  # the child keeps its own copy open
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # As for the embedded Ray (see ray_cluster.ensure_ray): a failed pip
            # environment fails its node at once.
            env={
                "RUNTIME_ENV_RETRY_TIMES": "1",
                **ray_system_env(),
                **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            },
        )


def _port_taken(log_path: Path, offset: int) -> bool:
    text = _log_tail(log_path, offset, lines=200)
    return "already in use" in text or "Failed to start the grpc server" in text


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:  # it died already: the wait below reports why
        return None


def _log_tail(path: Path, offset: int, lines: int = 8) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _wait_for_head(proc: subprocess.Popen, log_path: Path, offset: int, timeout: float) -> None:
    def exited() -> None:
        if proc.poll() is not None:
            raise ClusterError(f"`ray start` exited with {proc.returncode}")

    def started() -> bool:
        with open(log_path, "rb") as f:
            f.seek(offset)
            return b"Ray runtime started" in f.read()

    wait_until(
        started,
        timeout,
        check=exited,
        on_timeout=lambda: ClusterError(
            f"`ray start` did not report a running head within {timeout} s"
        ),
    )


def _attach(
    settings: Settings,
    address: str,
    *,
    ui: tuple[str, int] | None,
    listen: tuple[str, int] | None,
    tls: tuple[str, str] | None,
) -> ServiceState:
    """Start the dispatcher service on the Ray cluster at ``address``, on this node;
    the cluster's own head stays as it is (``qflow stop`` leaves Ray running)."""
    try:
        service_pid, gcs_address = _start_actor(address, settings, on_this_node=True)
    except Exception as exc:
        raise ClusterError(
            f"Could not attach qflow's service to the Ray cluster at {address}: {exc}. "
            "Run `qflow start --address` on a node of that cluster (after `ray start`), "
            "with the address `ray start` printed."
        ) from exc
    raylet = _local_raylet(gcs_address)
    state = ServiceState(
        pid=raylet.pid if raylet else service_pid,
        create_time=_create_time(raylet.pid if raylet else service_pid),
        address=gcs_address,
        home=str(settings.home),
        started_at=now_iso(),
        pids=[],
        resources={},
        attached=True,
        service_pid=service_pid,
        service_create_time=_create_time(service_pid),
    )
    state.save(settings)
    try:
        if ui is not None:
            state.update(_start_ui(settings, *ui))
        if listen is not None:
            state.update(_start_server(settings, *listen, tls=tls))
    except Exception:
        stop(settings)
        raise
    state.save(settings)
    return state


def _local_raylet(gcs_address: str) -> psutil.Process | None:
    """This machine's raylet of the cluster at ``gcs_address``: the node qflow's
    service lives on, whose life stands for the attached head's."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.info.get("name") == "raylet" and gcs_address in cmdline:
            return proc
    return None


def _start_actor(address: str, settings: Settings, on_this_node: bool = False) -> Any:
    """Start the detached dispatcher actor on the head (or, ``on_this_node``, on the
    node of this process, returning its process id and the cluster's GCS address);
    return its process id."""
    enable_token_auth()
    for attempt in range(5):
        try:
            with quiet_ray():
                ray.init(
                    address=address,
                    namespace=SERVICE_NAMESPACE,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            break
        except ConnectionError:
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    try:
        placement: dict[str, Any] = {}
        if on_this_node:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = ray.get_runtime_context().get_node_id()
            placement["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=False)
        # Waiters hold threads of a group of their own (see DispatcherService.wait).
        remote = cast(Any, ray.remote)(concurrency_groups={"waits": WAITERS})
        actor = (
            remote(DispatcherService)
            .options(
                name=SERVICE_NAME,
                namespace=SERVICE_NAMESPACE,
                lifetime="detached",
                max_concurrency=64,
                num_cpus=0,
                get_if_exists=True,
                max_restarts=-1,
                **placement,
            )
            .remote(str(settings.home))
        )
        pid: int = ray.get(cast(Any, actor).ping.remote(), timeout=120)
        if on_this_node:
            return pid, ray.get_runtime_context().gcs_address
        return pid
    finally:
        ray.shutdown()


def _start_ui(settings: Settings, host: str, port: int, timeout: float = 30.0) -> dict[str, Any]:
    """Start ``qflow ui`` in its own process; wait until it answers."""
    import secrets

    token = secrets.token_urlsafe(24)  # on loopback too: other local users reach it
    # The token goes in the environment, not in argv, where `ps` would show it.
    pid, create_time = _start_child(
        settings,
        "ui",
        ["--host", host, "--port", str(port)],
        host,
        port,
        timeout,
        {"QFLOW_UI_TOKEN": token},
    )
    url = f"http://{url_host(host)}:{port}/?token={token}"
    return {"ui_pid": pid, "ui_create_time": create_time, "ui_url": url}


def _start_server(
    settings: Settings,
    host: str,
    port: int,
    tls: tuple[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Start ``qflow serve`` (the UI and the HTTP API) in its own process; wait until it
    answers. It makes the token ``qflow token`` prints."""
    argv = ["--listen", f"{url_host(host)}:{port}"]
    if tls is not None:
        argv += ["--certfile", tls[0], "--keyfile", tls[1]]
    pid, create_time = _start_child(settings, "serve", argv, host, port, timeout, {})
    url = f"{'https' if tls else 'http'}://{url_host(host)}:{port}"
    return {"server_pid": pid, "server_create_time": create_time, "server_url": url}


def _start_child(
    settings: Settings,
    command: str,
    argv: list[str],
    host: str,
    port: int,
    timeout: float,
    env: dict[str, str],
) -> tuple[int, float | None]:
    """Start ``qflow COMMAND ARGV`` in its own session, logging to
    ``$QFLOW_HOME/COMMAND.log``; wait until ``host:port`` accepts connections."""
    import sys

    full_env = {**os.environ, "QFLOW_HOME": str(settings.home), **env}
    # It serves, never forwards, and finds the head through service.json.
    for name in ("QFLOW_SERVER", "QFLOW_TOKEN", "RAY_ADDRESS"):
        full_env.pop(name, None)
    log_path = settings.home / f"{command}.log"  # private: it may hold a token
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qflow.cli", command, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    probe = "127.0.0.1" if host in ("0.0.0.0", "::") else host.strip("[]")

    def exited() -> None:
        if proc.poll() is not None:
            raise ClusterError(
                f"`qflow {command}` exited with {proc.returncode} at start; see "
                f"{log_path}: {_log_tail(log_path, 0)}"
            )

    def listening() -> bool:
        try:
            with socket.create_connection((probe, port), timeout=1):
                return True
        except OSError:
            return False

    def timed_out() -> ClusterError:
        proc.kill()
        return ClusterError(
            f"`qflow {command}` did not listen on {host}:{port} within {timeout:.0f} s; "
            f"see {log_path}"
        )

    wait_until(listening, timeout, interval=0.2, on_timeout=timed_out, check=exited)
    return proc.pid, _create_time(proc.pid)


def stop(settings: Settings, timeout: float = 0.5) -> list[int]:
    """Stop what :func:`start` started, by pid; return the pids that were stopped.

    Every process gets SIGTERM at once and ``timeout`` seconds to go, then SIGKILL:
    the head keeps no state that outlives it (the store is SQLite, written as it goes).
    """
    state = ServiceState.load(settings)
    if state is None:
        return []
    procs: dict[int, psutil.Process] = {}
    if state.get("attached"):
        _detach(state)
    elif same_process(state):
        main = psutil.Process(state["pid"])
        procs[main.pid] = main
        for child in main.children(recursive=True):
            procs[child.pid] = child
    for child in ("ui", "server"):
        pid = state.get(f"{child}_pid")
        if pid is not None and same_process(
            {"pid": pid, "create_time": state.get(f"{child}_create_time")}
        ):
            procs[pid] = psutil.Process(pid)
    for pid in state.get("pids", []):
        if pid not in procs:
            try:
                p = psutil.Process(pid)
                # Only a process still in the head's session is one we started.
                if os.getsid(pid) == state["pid"]:
                    procs[pid] = p
            except (psutil.Error, ProcessLookupError):
                pass
    for p in procs.values():
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    if not state.get("attached"):  # an attached cluster's address file is its own
        _forget_default_address(state["address"])
    settings.service_file.unlink(missing_ok=True)
    return sorted(procs)


def _detach(state: ServiceState) -> None:
    """Stop qflow's service on an attached cluster for good (Ray would restart a
    killed process); the cluster itself runs on."""
    try:
        with quiet_ray():
            ray.init(address=state["address"], namespace=SERVICE_NAMESPACE, log_to_driver=False)
        try:
            ray.kill(ray.get_actor(SERVICE_NAME, namespace=SERVICE_NAMESPACE), no_restart=True)
        finally:
            ray.shutdown()
    except Exception:  # the cluster is gone: so is the service
        pass


def _read_default_address() -> str | None:
    pointer = ray_address_file()
    try:
        return pointer.read_text().strip() or None if pointer else None
    except OSError:
        return None


def _restore_default_address(ours: str, previous: str | None) -> None:
    """Make Ray's address file say ``previous`` again, if it now names our head."""
    pointer = ray_address_file()
    try:
        if pointer is None or pointer.read_text().strip() != ours:
            return
        if previous:
            pointer.write_text(previous)
        else:
            pointer.unlink()
    except OSError:  # gone already: nothing to undo
        pass


def _forget_default_address(address: str) -> None:
    """Remove Ray's pointer to our head, as ``ray stop`` would, but only if it is ours.

    ``ray start`` writes it; a later plain ``ray.init()`` would try to join the
    dead head through it instead of starting a fresh local Ray.
    """
    _restore_default_address(address, None)
