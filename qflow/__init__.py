"""qflow: Covalent-compatible hybrid quantum-classical workflows on Ray.

Example:
    >>> import qflow as ct
    >>> @ct.electron
    ... def add(a, b):
    ...     return a + b
    >>> @ct.lattice
    ... def flow(a, b):
    ...     return add(add(a, b), b)
    >>> ct.dispatch_sync(flow)(1, 2).result
    5
"""

# First: old module paths stay importable (stored dispatches' pickles name them).
from qflow import _moved as _moved
from qflow import executor as executor
from qflow._api import cancel as cancel
from qflow._api import dispatch as dispatch
from qflow._api import dispatch_sync as dispatch_sync
from qflow._api import get_result as get_result
from qflow._api import init as init
from qflow._api import redispatch as redispatch
from qflow._api import stop_triggers as stop_triggers
from qflow.core import fs as fs
from qflow.core import fs_strategies as fs_strategies
from qflow.core.deps import DepsBash as DepsBash
from qflow.core.deps import DepsCall as DepsCall
from qflow.core.deps import DepsPip as DepsPip
from qflow.core.metrics import log_metric as log_metric
from qflow.core.options import ElectronOptions as ElectronOptions
from qflow.core.status import Status as Status
from qflow.covalent import leptons as leptons
from qflow.covalent import triggers as triggers
from qflow.covalent import waits as waits
from qflow.covalent.config import get_config as get_config
from qflow.covalent.config import get_context as get_context
from qflow.covalent.config import reload_config as reload_config
from qflow.covalent.config import set_config as set_config
from qflow.covalent.config import sync as sync
from qflow.covalent.leptons import Lepton as Lepton
from qflow.electron import Electron as Electron
from qflow.electron import electron as electron
from qflow.electron import wait as wait
from qflow.exceptions import QflowError as QflowError
from qflow.lattice import Lattice as Lattice
from qflow.lattice import lattice as lattice
from qflow.qelectron import qelectron as qelectron
from qflow.result import Result as Result
from qflow.result import TransportableObject as TransportableObject
from qflow.retention import delete as delete
from qflow.retention import gc as gc
from qflow.secrets import secret as secret

# ``qflow.executor`` (Covalent's executor plugins) and ``qflow.waits`` are modules, reached
# as attributes the way Covalent code does (``ct.executor.LocalExecutor``).

#: Covalent's ``ct.status``: ``qflow.status.COMPLETED`` and friends.
status = Status

__version__ = "0.1.0"

__all__ = [
    "cancel",
    "delete",
    "DepsBash",
    "DepsCall",
    "DepsPip",
    "dispatch",
    "dispatch_sync",
    "Electron",
    "electron",
    "ElectronOptions",
    "gc",
    "get_config",
    "get_context",
    "get_result",
    "init",
    "Lattice",
    "lattice",
    "Lepton",
    "log_metric",
    "qelectron",
    "QflowError",
    "redispatch",
    "reload_config",
    "Result",
    "secret",
    "set_config",
    "Status",
    "status",
    "stop_triggers",
    "sync",
    "TransportableObject",
    "wait",
]
