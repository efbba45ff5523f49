"""Connecting to Ray: join a running cluster if there is one, else start a local one."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from qflow.exceptions import (
    ClusterConnectionError,
    ClusterError,
)
from qflow.settings import Settings

SERVICE_NAME = "qflow-dispatcher"
SERVICE_NAMESPACE = "qflow"


# Ray's private APIs are used from this module only, each behind a fallback.


def ray_address_file() -> Path | None:
    """Ray's machine-wide file where ``ray start --head`` announces its address."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:
        return None
    return Path(get_ray_address_file(None))


def node_ip() -> str:
    """This machine's address as Ray would advertise it."""
    try:
        from ray._private.services import get_node_ip_address
    except ImportError:
        return "127.0.0.1"
    return get_node_ip_address()


def announced_address() -> str | None:
    """The head a ``ray start --head`` on this machine announced in Ray's address file.

    Only a head that still answers counts: ``ray start`` leaves the file behind when
    its head dies. Processes found by scanning (another script's in-process Ray, a
    stranger's cluster) are never joined.
    """
    try:
        from ray._private.utils import read_ray_address

        address = read_ray_address(None)
    except Exception:  # a private API; without it nothing is announced
        return None
    if not address:
        return None
    try:
        _probe(address, timeout=1.0)
    except ClusterConnectionError:
        return None
    return address


def ray_cli() -> str:
    """The ``ray`` command of the environment qflow runs in (not whichever is first on PATH)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def enable_token_auth() -> None:
    """Turn on Ray's token auth for this process when a token exists and nobody chose.

    Ray 2.60 heads started by ``ray start`` require a token. ``ray.init("auto")``
    enables it by itself; ``ray.init("ip:port")`` does not, and gets InvalidAuthToken.
    Setting RAY_AUTH_MODE after ``import ray`` is too late for Ray's C++ config, so
    Ray's own helper (which also reloads that config) is used.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token auth
        return
    with quiet_ray():  # its "token authentication is enabled" notice is Ray's, not news
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _probe(address: str, timeout: float = 3.0) -> None:
    """Fail fast on a host:port nobody listens on; ray.init would retry for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterConnectionError(
            f"No Ray cluster answers at {address!r} ({exc.strerror or exc}). Start one with "
            "`qflow start` (or `ray start --head`), fix RAY_ADDRESS, or unset it to let "
            "qflow start an embedded local Ray."
        ) from exc


#: Ray settings for the Ray clusters qflow starts (the embedded one and ``qflow
#: start``'s head), not for clusters it joins. Ray stops an idle worker process 1 s
#: after it is past the CPU count; starting one costs 1-2 s on a small machine. A
#: dispatch runs more tasks at once than there are CPUs whenever some hold none (a
#: sublattice, a loop's first chunk), and would start those workers again each time:
#: ``qaoa_maxcut`` with ``restarts=4`` on 2 CPUs took 8-15 s warm instead of 3.8 s.
#: Idle workers are kept for a minute.
RAY_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


def ray_system_env() -> dict[str, str]:
    """:data:`RAY_SYSTEM_CONFIG` as the environment of a Ray process started by command
    (Ray reads ``RAY_<setting>``)."""
    return {f"RAY_{key}": str(value) for key, value in RAY_SYSTEM_CONFIG.items()}


def ensure_ray(settings: Settings) -> str:
    """Connect this process to Ray and say how: ``"existing"``, ``"joined"`` or ``"embedded"``.

    Raises:
        ClusterConnectionError: ``RAY_ADDRESS`` (or the given address) does not answer.
    """
    if ray.is_initialized():
        return "existing"
    # The dispatcher reads every node's outcome itself; a failed node's value ref is
    # dropped unread on purpose, so Ray's "Unhandled error" log line would be noise.
    # (Set when qflow starts Ray, not on import: importing qflow changes nothing.)
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    common: dict[str, Any] = dict(
        log_to_driver=False, configure_logging=True, logging_level=logging.ERROR
    )
    address, _source = chosen_address(settings)
    if address is not None:
        _probe(address)
        enable_token_auth()
        try:
            with quiet_ray():
                ray.init(address=address, **common)
        except Exception as exc:
            raise ClusterConnectionError(
                f"No Ray cluster answers at {address!r} ({type(exc).__name__}: {exc}). "
                "Start one with `qflow start` (or `ray start --head`), fix RAY_ADDRESS, or "
                "unset it to let qflow start an embedded local Ray."
            ) from exc
        return "joined"
    # Ray tries three times to build an environment that failed. qflow's pip environments
    # are wheels only, so a failure is the pin itself (pip retries the network on its
    # own): failing at once spares the user most of a minute per bad pin.
    os.environ.setdefault("RUNTIME_ENV_RETRY_TIMES", "1")
    try:
        # "local": start a fresh, private Ray even if Ray's address file points at a head
        # that is gone (a plain ray.init() would try to join it and fail).
        with quiet_ray():
            ray.init(
                address="local",
                num_cpus=settings.num_cpus,
                resources=dict(settings.resources) or None,
                include_dashboard=False,
                _system_config=RAY_SYSTEM_CONFIG,
                **common,
            )
    except Exception as exc:
        raise ClusterError(f"Could not start a local Ray: {exc!r}") from exc
    route_raylet_notices(settings.home / RAY_NOTICES)
    return "embedded"


#: Where Ray's notices about qflow's own workers go instead of the terminal.
RAY_NOTICES = "ray-notices.log"

#: Raylet messages about how qflow uses Ray (its warm actors start workers by design),
#: not about the user's code: logged, not printed mid-run.
QFLOW_NOTICES = ("PYTHON worker processes have been started",)


def route_raylet_notices(path: Path) -> None:
    """Send the raylet's messages in :data:`QFLOW_NOTICES` to ``path`` instead of the
    terminal; every other message is printed as Ray prints it.

    Ray prints raylet messages through ``ray._private.worker.print_to_stdstream``, looked
    up at each message: wrapping it is the one hook Ray offers (a private API, kept
    here with the others this module uses).
    """
    import ray._private.worker as ray_worker

    printer = ray_worker.print_to_stdstream
    if getattr(printer, "qflow_notices", None) == path:
        return
    original = getattr(printer, "__wrapped__", printer)

    def filtered(data: dict[str, Any], ignore_prefix: bool = False) -> Any:
        lines = [str(line) for line in data.get("lines", [])]
        if data.get("pid") == "raylet" and any(n in ln for ln in lines for n in QFLOW_NOTICES):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as log:
                    log.writelines(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {ln}\n" for ln in lines)
            except OSError:  # a notice is not worth failing a dispatch over
                pass
            return None
        return original(data, ignore_prefix=ignore_prefix)

    filtered.__wrapped__ = original  # type: ignore[attr-defined]
    filtered.qflow_notices = path  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = filtered


def chosen_address(settings: Settings) -> tuple[str | None, str]:
    """The cluster the user chose, and how: ``(address, source)``, or ``(None, "embedded")``.

    In order: ``RAY_ADDRESS`` (or an explicit address), the head ``qflow start``
    recorded under ``$QFLOW_HOME``, the head ``ray start --head`` announced. Nothing
    else: with none of these, qflow starts its own private Ray.
    """
    if settings.ray_address:
        return settings.ray_address, "RAY_ADDRESS"
    from qflow.runtime.head_state import live_address

    address = live_address(settings)
    if address is not None:
        return address, "qflow start"
    address = announced_address()
    if address is not None:
        return address, "ray start"
    return None, "embedded"


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Hide Ray's start-up chatter (the token-auth notice, C++ log lines) from users."""
    logger = logging.getLogger("ray")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def same_address(a: str, b: str) -> bool:
    """Whether two ``host:port`` Ray addresses name the same head on this machine or
    another (``127.0.0.1`` and this machine's own address are the same host).

    Example:
        >>> same_address("127.0.0.1:6379", "localhost:6379"), same_address("a:1", "a:2")
        (True, False)
    """
    (host_a, _, port_a), (host_b, _, port_b) = a.rpartition(":"), b.rpartition(":")
    if port_a != port_b:
        return False
    local = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
    with contextlib.suppress(Exception):
        local.add(node_ip())
    return host_a == host_b or (host_a in local and host_b in local)


def find_service() -> object | None:
    """The detached dispatcher actor of ``qflow start``, if this cluster has one."""
    try:
        return ray.get_actor(SERVICE_NAME, namespace=SERVICE_NAMESPACE)
    except ValueError:
        return None
