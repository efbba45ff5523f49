"""Every exception qflow raises, under one root.

Hierarchy::

    QflowError
    ├── QflowInputError            bad input from the caller (also a ValueError)
    │   ├── QflowConfigError       an unknown option, executor or backend name
    │   └── QflowSerializationError  an argument or output that cannot be pickled
    ├── GraphBuildError            misuse while a lattice builds its graph
    ├── DispatchNotFoundError      an unknown dispatch id (also a KeyError)
    ├── DispatchFailedError        a dispatch ended FAILED (raised only on request)
    ├── DispatchTimeoutError       get_result(wait=True, timeout=...) ran out (also a TimeoutError)
    ├── DependencyError            a DepsBash/DepsCall hook failed before the electron ran
    ├── PackedCallError            an electron call failed inside a pack (its traceback kept)
    │   └── PackSkipped            a fused call not run: the call before it failed
    ├── ClusterError               Ray could not be started or reached
    │   ├── ClusterConnectionError an address that does not answer
    │   └── InfeasibleResourceError  a request no node of the cluster can ever hold
    ├── StoreError                 the results store is unusable
    │   └── StoreFullError         the device holding the store has no space left
    ├── BackendError               a quantum backend failed or is unavailable
    ├── SlurmError                 a Slurm job failed, timed out or could not be submitted
    └── ServerError                a qflow server did not answer, or refused the request
        ├── ServerAuthError        no token, or a wrong one (HTTP 401)
        └── VersionMismatchError   client and server could not unpickle each other's data

Third-party errors (Ray, Braket, submitit) are translated where they cross into
qflow, with ``raise ... from exc`` so the original stays reachable.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ClusterConnectionError",
    "ClusterError",
    "DependencyError",
    "DispatchFailedError",
    "DispatchNotFoundError",
    "DispatchTimeoutError",
    "GraphBuildError",
    "InfeasibleResourceError",
    "PackSkipped",
    "PackedCallError",
    "QflowConfigError",
    "QflowError",
    "QflowInputError",
    "QflowSerializationError",
    "QflowWarning",
    "ServerAuthError",
    "ServerError",
    "SlurmError",
    "StoreError",
    "StoreFullError",
    "VersionMismatchError",
]


class QflowError(Exception):
    """Root of every error qflow raises."""


class QflowInputError(QflowError, ValueError):
    """The caller passed something qflow cannot use; the message says how to fix it."""


class QflowConfigError(QflowInputError):
    """An unknown or invalid option, executor, backend or parameter."""


class QflowSerializationError(QflowInputError):
    """An argument or output that cloudpickle cannot serialize."""


class GraphBuildError(QflowError):
    """A lattice used an electron output in a way that cannot become a graph node."""


class DispatchNotFoundError(QflowError, KeyError):
    """No dispatch with this id exists in the results store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DispatchFailedError(QflowError):
    """A dispatch ended FAILED."""


class DispatchTimeoutError(QflowError, TimeoutError):
    """A dispatch was still running when ``get_result(wait=True, timeout=...)`` gave up."""


class DependencyError(QflowError):
    """A ``DepsBash`` command or ``DepsCall`` hook failed, so the electron did not run."""


class ClusterError(QflowError):
    """Ray could not be started, reached or used."""


class ClusterConnectionError(ClusterError, ConnectionError):
    """A Ray cluster address that does not answer."""


class InfeasibleResourceError(ClusterError):
    """A task or actor asks for more of a resource than any node of the cluster has."""


class StoreError(QflowError):
    """The results store cannot be opened or is from an unknown schema version."""


class StoreFullError(StoreError):
    """The device holding the results store has no space left; the store is intact."""


class BackendError(QflowError):
    """A quantum backend failed or is not available here."""


class SlurmError(QflowError):
    """A Slurm job could not be submitted, failed, was cancelled or hit its time limit."""


class ServerError(QflowError):
    """A qflow server (``QFLOW_SERVER``, ``dispatcher_addr=``) did not answer, or refused
    the request; the message names its URL."""


class ServerAuthError(ServerError):
    """The server wants a token (``QFLOW_TOKEN``, ``qflow login``) and got none or a wrong
    one."""


class VersionMismatchError(ServerError):
    """Client and server run versions of qflow, Python, cloudpickle or Ray whose pickles
    do not load in each other; the message names both."""


class QflowWarning(QflowError, UserWarning):
    """Something qflow accepted but will not do as asked (e.g. a Covalent argument it
    does not use); the message says what and why."""


class PackedCallError(QflowError):
    """An electron call that failed inside a pack (several calls sharing one Ray task);
    it carries the call's own outcome, as a task's error does."""


class PackSkipped(PackedCallError):
    """A call of a fused chain that did not run: the call it takes its input from failed."""
