"""The executor contract: one required method, ``submit``."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

import ray

from qflow.core.completions import Completion
from qflow.core.task import PickledValue, TaskCall


@dataclass
class Submission:
    """A node handed to an executor.

    Attributes:
        done: resolves to the node's :class:`~qflow.core.task.NodeOutcome`, or raises its
            exception (carrying the outcome as ``__qflow_outcome__`` where it ran).
        value_ref: a Ray ObjectRef of the output that downstream Ray tasks can take
            at once. Executors that produce the value outside Ray leave it None and
            set ``outcome.value_ref`` when done.
        handle: whatever :meth:`Executor.cancel` needs.
        packed: it shares its task with other calls (a pack): cancelling it alone
            must not stop them, so it is only let go of.
    """

    done: Future | Completion
    value_ref: Any = None
    handle: Any = None
    cancelled: bool = field(default=False)
    packed: bool = False


@dataclass(frozen=True)
class InPack:
    """An input that is the value of the pack's call ``index`` (a fused chain)."""

    index: int


def fetch_inputs(deps: Sequence[Any]) -> list[Any]:
    """The values of a node's inputs, for an executor that runs it outside a Ray task:
    Ray refs are fetched (all in one ``ray.get``); a packed call's small value, which
    travels already pickled (:class:`~qflow.core.task.PickledValue`), is passed as it is,
    for :func:`~qflow.core.task.execute_call` to load."""
    refs = [d for d in deps if not isinstance(d, PickledValue)]
    got = iter(ray.get(refs) if refs else ())
    return [d if isinstance(d, PickledValue) else next(got) for d in deps]


class Executor(abc.ABC):
    """Runs electrons somewhere. Only :meth:`submit` must be defined.

    Subclasses are named ``<Name>Executor`` and referred to by ``name()``, e.g.
    ``RayExecutor.name() == "ray"``.
    """

    #: Registry of executor classes by short name, filled by ``__init_subclass__``.
    registry: ClassVar[dict[str, type[Executor]]] = {}
    #: Whether error messages offer it to users (False for qflow's internal ones).
    listed: ClassVar[bool] = True
    #: Seconds the dispatcher waits, once a cancelled node's inputs exist, before it
    #: calls :meth:`cancel` (a node is never cancelled while its inputs are pending).
    cancel_delay_s: ClassVar[float] = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.endswith("Executor"):
            raise TypeError(
                f"Executor subclasses are named <Name>Executor so that their short name can "
                f"be derived; rename {cls.__name__!r}."
            )
        if getattr(cls.submit, "__isabstractmethod__", False):
            raise TypeError(f"{cls.__name__} must define submit(call, deps) -> Submission.")
        Executor.registry[cls.name()] = cls

    @classmethod
    def name(cls) -> str:
        """The short name users pass as ``executor=``."""
        return cls.__name__[: -len("Executor")].lower()

    @classmethod
    def affinity(cls) -> int:
        """-1 unavailable here, 0 available on request only, 1 available, 2 a cluster."""
        return 1

    @abc.abstractmethod
    def submit(self, call: TaskCall, deps: Sequence[Any]) -> Submission:
        """Start ``call``; ``deps`` are ObjectRefs of ``call.dep_ids`` in order."""

    def submit_many(
        self, calls: Sequence[TaskCall], deps: Sequence[Sequence[Any]]
    ) -> list[Submission]:
        """Start several calls of one electron, packed where the executor can: each
        keeps its own :class:`Submission`. By default, one :meth:`submit` each."""
        return [self.submit(call, d) for call, d in zip(calls, deps)]

    def cancel(self, submission: Submission) -> None:  # noqa: B027 (optional: default no-op)
        """Stop a submitted node if possible; the default cannot."""


def refuse_deps_pip(call: TaskCall, where: str, instead: str) -> None:
    """Raise for an electron with DepsPip packages on an executor that cannot give it an
    environment of its own: installing them where it runs would change that Python.

    Raises:
        QflowConfigError: naming the packages, the executor and what to do instead.
    """
    from qflow.exceptions import QflowConfigError

    packages = call.options.deps_pip.packages
    if packages:
        raise QflowConfigError(
            f"Electron {call.label} asks for pip packages {packages} (deps_pip, or a DepsPip "
            f"in call_before/call_after), and {where} cannot give it an environment of its "
            f"own; qflow never installs into the Python that runs it. {instead}"
        )
