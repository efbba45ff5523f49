"""The server's token: made at start, kept in ``$QFLOW_HOME/server.token`` (0600),
printed by ``qflow token``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from qflow.exceptions import QflowConfigError

__all__ = ["make_token", "read_token", "token_path"]


def token_path(home: Path) -> Path:
    """Where the server of ``home`` keeps its token."""
    return home / "server.token"


def make_token(home: Path) -> str:
    """A fresh token, written for the owner's eyes only."""
    token = secrets.token_urlsafe(32)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = token_path(home)
    path.unlink(missing_ok=True)  # a new file, so its mode is ours from the start
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_token(home: Path) -> str:
    """The token of the server of ``home``.

    Raises:
        QflowConfigError: no server has been started for ``home``.
    """
    try:
        return token_path(home).read_text().strip()
    except FileNotFoundError:
        raise QflowConfigError(
            f"No qflow server has a token in {home}: start one with "
            "`qflow start --listen HOST:PORT` (with this QFLOW_HOME)."
        ) from None
