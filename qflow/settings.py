"""Where qflow keeps its state and which Ray it uses, read from the environment."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qflow.exceptions import QflowConfigError

__all__ = ["Settings", "parse_resources"]


def parse_resources(value: Any, where: str = "resources") -> tuple[tuple[str, float], ...]:
    """Validate custom Ray resources given as a mapping or a JSON object string.

    Example:
        >>> parse_resources('{"qpu:simulated": 1}')
        (('qpu:simulated', 1.0),)
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise QflowConfigError(
                f"{where} must be a JSON object such as '{{\"qpu:simulated\": 1}}'; got "
                f"{value!r} ({exc.msg})."
            ) from exc
    if not isinstance(value, Mapping):
        raise QflowConfigError(
            f"{where} maps resource names to amounts, e.g. {{'qpu:simulated': 1}}; got "
            f"{type(value).__name__} {value!r}."
        )
    out = []
    for name, amount in value.items():
        ok = isinstance(amount, int | float) and not isinstance(amount, bool)
        if (
            not isinstance(name, str)
            or not name
            or not ok
            or not math.isfinite(amount)
            or amount < 0
        ):
            raise QflowConfigError(
                f"{where}: each resource is a non-empty name with a finite amount >= 0; got "
                f"{name!r}: {amount!r}."
            )
        if name in ("CPU", "GPU", "memory"):
            raise QflowConfigError(
                f"{where}: {name!r} is one of Ray's built-in resources; set it with num_cpus "
                "or num_gpus, and keep resources for custom ones such as 'qpu:simulated'."
            )
        out.append((name, float(amount)))
    return tuple(sorted(out))


_FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def parse_flag(text: str | None, where: str, *, default: bool) -> bool:
    """An on/off environment variable; unset or empty means ``default``."""
    if not text:
        return default
    try:
        return _FLAGS[text.strip().lower()]
    except KeyError:
        raise QflowConfigError(f"{where} is one of {', '.join(_FLAGS)}; got {text!r}.") from None


@dataclass(frozen=True)
class Settings:
    """qflow's settings. Each field has an environment variable.

    Attributes:
        home: ``$QFLOW_HOME``, default ``~/.qflow``: the results store, blobs, and the
            state of ``qflow start``.
        ray_address: ``$RAY_ADDRESS``: a Ray cluster to join instead of the embedded one.
        num_cpus: ``$QFLOW_NUM_CPUS``: CPUs for the embedded local Ray (default: all).
        resources: ``$QFLOW_RESOURCES``, a JSON object: custom resources the embedded
            local Ray offers, e.g. ``{"qpu:simulated": 1}``.
        freeze_gc: ``$QFLOW_FREEZE_GC`` (``1``/``0``, default ``1``): once connected to
            Ray, exempt the objects alive then from Python's full garbage collections,
            which would otherwise rescan them during every large dispatch (see
            :func:`qflow.runtime.heap.settle_heap`).
    """

    home: Path
    ray_address: str | None = None
    num_cpus: int | None = None
    resources: tuple[tuple[str, float], ...] = field(default=())
    freeze_gc: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.freeze_gc, bool):
            raise QflowConfigError(f"freeze_gc is True or False; got {self.freeze_gc!r}.")
        if self.num_cpus is not None and (
            isinstance(self.num_cpus, bool)
            or not isinstance(self.num_cpus, int)
            or self.num_cpus < 1
        ):
            raise QflowConfigError(
                f"num_cpus is a whole number >= 1 (or unset for all CPUs); got {self.num_cpus!r}."
            )

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("QFLOW_HOME") or Path.home() / ".qflow").expanduser()
        cpus = os.environ.get("QFLOW_NUM_CPUS")
        try:
            num_cpus = int(cpus) if cpus else None
        except ValueError:
            raise QflowConfigError(
                f"QFLOW_NUM_CPUS is a whole number such as 4; got {cpus!r}."
            ) from None
        res = os.environ.get("QFLOW_RESOURCES")
        return cls(
            home=home,
            ray_address=os.environ.get("RAY_ADDRESS") or None,
            num_cpus=num_cpus,
            resources=parse_resources(res, "QFLOW_RESOURCES") if res else (),
            freeze_gc=parse_flag(
                os.environ.get("QFLOW_FREEZE_GC"), "QFLOW_FREEZE_GC", default=True
            ),
        )

    @property
    def db_path(self) -> Path:
        return self.home / "qflow.db"

    @property
    def service_file(self) -> Path:
        return self.home / "service.json"


#: How deep sublattices may nest unless ``$QFLOW_MAX_SUBLATTICE_DEPTH`` says otherwise.
#: Each level holds a Ray worker while its children run, so a lattice that calls
#: itself without a base case would otherwise start workers until memory runs out.
DEFAULT_MAX_SUBLATTICE_DEPTH = 10


def max_sublattice_depth() -> int:
    """``$QFLOW_MAX_SUBLATTICE_DEPTH`` (a whole number >= 1), default 10.

    Example:
        >>> max_sublattice_depth() >= 1
        True
    """
    text = os.environ.get("QFLOW_MAX_SUBLATTICE_DEPTH")
    if not text:
        return DEFAULT_MAX_SUBLATTICE_DEPTH
    try:
        depth = int(text)
    except ValueError:
        depth = 0
    if depth < 1:
        raise QflowConfigError(
            f"QFLOW_MAX_SUBLATTICE_DEPTH is a whole number >= 1 (how deep "
            f"sublattices may nest; default "
            f"{DEFAULT_MAX_SUBLATTICE_DEPTH}); got {text!r}."
        )
    return depth
