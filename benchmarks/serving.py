"""A qflow server for the benchmarks that measure clients of one: a ``qflow start
--listen`` head in a fresh home, and the environments of a script on the head and of a
remote client (its own home, no Ray)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Head:
    """A running head: its home, and the environments that reach it.

    Attributes:
        home: the head's ``QFLOW_HOME``.
        on_head: a script's environment on the head's machine, joined to it.
        remote: a client's environment: ``QFLOW_SERVER`` and ``QFLOW_TOKEN``, its own home.
    """

    home: Path
    on_head: dict[str, str]
    remote: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def started_head(**env: str) -> Iterator[Head]:
    """Start a head with ``env`` added to its environment; stop it on leaving."""
    home = Path(tempfile.mkdtemp(prefix="qflow-bench-server-"))
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "QFLOW_"))}
    on_head = {**base, "QFLOW_HOME": str(home), **env}
    cli = [sys.executable, "-m", "qflow.cli"]
    subprocess.run([*cli, "start", "--listen", f"127.0.0.1:{port}"], env=on_head, check=True)
    try:
        token = subprocess.run(
            [*cli, "token"], env=on_head, capture_output=True, text=True, check=True
        ).stdout.strip()
        remote = {
            **base,
            "QFLOW_HOME": tempfile.mkdtemp(prefix="qflow-bench-client-"),
            "QFLOW_SERVER": f"http://127.0.0.1:{port}",
            "QFLOW_TOKEN": token,
        }
        yield Head(home, on_head, remote)
    finally:
        subprocess.run([*cli, "stop"], env=on_head)
