"""Finding a backend by name: the built-in ones and any Backend subclass defined in
this process (``Backend.registry``), and those installed packages offer through the
``qflow.backends`` entry-point group. Backends that wrap another one by name (such as
``simulated.qpu``) look it up here.
"""

from __future__ import annotations

from typing import Any

from qflow.backends.base import Backend
from qflow.exceptions import QflowConfigError

__all__ = ["ENTRY_POINT_GROUP", "get_backend"]


#: The entry-point group through which installed packages offer backends, e.g. in a
#: plugin's pyproject: ``[project.entry-points."qflow.backends"] "my.sim" = "pkg:MyBackend"``.
ENTRY_POINT_GROUP = "qflow.backends"


def _entry_point_names() -> list[str]:
    from importlib.metadata import entry_points

    return [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _from_entry_point(name: str) -> type[Backend] | None:
    """The Backend class an installed package offers as ``name``, if any."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:
                raise QflowConfigError(
                    f"Backend {name!r} is offered by {ep.value!r}, which failed to load: {exc!r}."
                ) from exc
            if not (isinstance(cls, type) and issubclass(cls, Backend)):
                raise QflowConfigError(
                    f"Entry point {name!r} ({ep.value}) is not a qflow.backends.Backend subclass."
                )
            return cls
    return None


def get_backend(spec: str | Backend, **kwargs: Any) -> Backend:
    """A Backend for a registry name (with its options) or an existing Backend.

    Names are the built-in backends, Backend subclasses defined in this process, and
    those installed packages offer through the ``qflow.backends`` entry-point group
    (found the way PennyLane finds device plugins).

    Raises:
        QflowConfigError: an unknown name; the message lists the valid ones.
    """
    if isinstance(spec, Backend):
        if kwargs:
            raise QflowConfigError(
                f"Options {sorted(kwargs)} given with a Backend object {spec!r}; set them "
                "on the object instead."
            )
        return spec
    cls = Backend.registry.get(spec) if isinstance(spec, str) else None
    if cls is None and isinstance(spec, str):
        cls = _from_entry_point(spec)
    if cls is None:
        valid = ", ".join(sorted({*Backend.registry, *_entry_point_names()}))
        raise QflowConfigError(
            f"Unknown backend {spec!r}. Valid backends are: {valid}. They need the quantum "
            "extra: pip install 'qflow-runtime[quantum]'."
        )
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise QflowConfigError(f"Invalid options for backend {spec!r}: {exc}.") from exc
