"""How secrets travel: a task carries a :class:`SecretsGrant` (names and where they are
kept, never values), and the courier, a Ray actor on the dispatcher's node, hands a
worker on another node the secrets its electron asked for, read from the dispatcher's
keep at that moment.

Ray returns a reply this small inline to the caller, so a value is never written to the
object store's spill files or to Ray's logs. The courier keeps nothing: it reads the
keep on every call.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from qflow.exceptions import QflowConfigError
from qflow.secrets.keep import SecretKeep
from qflow.secrets.providers import resolve

__all__ = ["SecretCourier", "SecretsGrant", "ask_courier", "grant_for"]

NAMESPACE = "qflow"


@dataclass(frozen=True)
class SecretsGrant:
    """What a task carries instead of secret values.

    Attributes:
        names: the secrets the electron asked for.
        keep: the keep's folder on the dispatcher's machine.
        node_id: the Ray node the dispatcher runs on (None outside Ray).
        courier: the name of the courier actor serving ``keep`` (None outside Ray).
    """

    names: tuple[str, ...]
    keep: str
    node_id: str | None = None
    courier: str | None = None


class SecretCourier:
    """Reads the keep at ``keep`` for callers on other nodes."""

    def __init__(self, keep: str) -> None:
        self.keep = keep

    def get(self, names: tuple[str, ...]) -> dict[str, str]:
        return resolve(names, SecretKeep(Path(self.keep)))

    def ping(self) -> bool:
        return True


_lock = threading.Lock()
_couriers: dict[tuple[str, str], Any] = {}  # this process's courier handles


def _name(keep: str) -> str:
    return "qflow-secrets-" + hashlib.sha1(keep.encode()).hexdigest()[:12]


def grant_for(names: tuple[str, ...], keep: Path) -> SecretsGrant:
    """What a task asking for ``names`` carries; on Ray, the courier for ``keep`` is
    started on this node first (once: it is named by the keep)."""
    import ray

    if not ray.is_initialized():
        return SecretsGrant(names, str(keep))
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    name = _name(str(keep))
    key = (ray.get_runtime_context().gcs_address, name)  # a new Ray needs a new one
    with _lock:
        if key not in _couriers:
            remote: Any = ray.remote(SecretCourier)
            courier = remote.options(
                name=name,
                namespace=NAMESPACE,
                get_if_exists=True,
                num_cpus=0,
                max_restarts=-1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
            ).remote(str(keep))
            ray.get(courier.ping.remote(), timeout=60)  # registered before a task asks
            _couriers[key] = courier  # held: Ray ends an actor no handle refers to
    return SecretsGrant(names, str(keep), node_id=here, courier=name)


def ask_courier(grant: SecretsGrant) -> dict[str, str]:
    """The values of ``grant.names``, from the courier on the dispatcher's node."""
    import ray

    try:
        courier = ray.get_actor(grant.courier or "", namespace=NAMESPACE)
        values = cast(dict[str, str], ray.get(courier.get.remote(grant.names), timeout=60))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(cause, QflowConfigError):
            raise QflowConfigError(str(cause.args[0]) if cause.args else str(cause)) from None
        raise
    except (ValueError, ray.exceptions.RayError) as exc:
        raise QflowConfigError(
            f"The secrets {', '.join(grant.names)} could not be fetched from the "
            f"dispatcher's node: its courier is gone ({type(exc).__name__}). Dispatch again."
        ) from None
    return values
