"""Connecting to Ray: join a running cluster if there is one, else start a local one."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
import socket
import ray

from qflow.exceptions import ClusterConnectionError, ClusterError
from qflow.settings import Settings

SERVICE_NAME = "qflow-dispatcher"
SERVICE_NAMESPACE = "qflow"


def _running_local_cluster() -> bool:
    try:
        from ray._private.services import find_gcs_addresses

        return bool(find_gcs_addresses())
    except Exception:  # a private API; if it moves, fall back to embedded
        return False


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


def ensure_ray(settings: Settings) -> str:
    """Connect this process to Ray and say how: ``"existing"``, ``"joined"`` or ``"embedded"``.

    Raises:
        ClusterConnectionError: ``RAY_ADDRESS`` (or the given address) does not answer.
    """
    if ray.is_initialized():
        return "existing"
    common = dict(log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    from qflow.service import live_address

    address = settings.ray_address or live_address(settings)
    if address is None and _running_local_cluster():
        address = "auto"
    if address is not None:
        _probe(address)
        enable_token_auth()
        try:
            ray.init(address=address, **common)
        except Exception as exc:
            raise ClusterConnectionError(
                f"No Ray cluster answers at {address!r} ({type(exc).__name__}: {exc}). "
                "Start one with `qflow start` (or `ray start --head`), fix RAY_ADDRESS, or "
                "unset it to let qflow start an embedded local Ray."
            ) from exc
        return "joined"
    try:
        # "local": start a fresh Ray even if a stale ray_current_cluster file points at a
        # head that is gone (a plain ray.init() would try to join it and fail).
        ray.init(address="local", num_cpus=settings.num_cpus, include_dashboard=False,
                 **common)
    except Exception as exc:
        raise ClusterError(f"Could not start a local Ray: {exc!r}") from exc
    return "embedded"


def find_service() -> object | None:
    """The detached dispatcher actor of ``qflow start``, if this cluster has one."""
    try:
        return ray.get_actor(SERVICE_NAME, namespace=SERVICE_NAMESPACE)
    except ValueError:
        return None
