"""Where qflow keeps its state, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """qflow's settings. Each field has an environment variable.

    Attributes:
        home: ``$QFLOW_HOME``, default ``~/.qflow``: the results store, blobs, and the
            state of ``qflow start``.
        ray_address: ``$RAY_ADDRESS``: a Ray cluster to join instead of the embedded one.
        num_cpus: ``$QFLOW_NUM_CPUS``: CPUs for the embedded local Ray (default: all).
    """

    home: Path
    ray_address: str | None = None
    num_cpus: int | None = None

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("QFLOW_HOME") or Path.home() / ".qflow").expanduser()
        cpus = os.environ.get("QFLOW_NUM_CPUS")
        return cls(home=home, ray_address=os.environ.get("RAY_ADDRESS") or None,
                   num_cpus=int(cpus) if cpus else None)

    @property
    def db_path(self) -> Path:
        return self.home / "qflow.db"

    @property
    def service_file(self) -> Path:
        return self.home / "service.json"
