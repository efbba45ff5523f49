"""Results stores. SQLite under ``$QFLOW_HOME`` is the embedded default."""

from qflow.store.base import ResultStore
from qflow.store.sqlite import SQLiteStore

__all__ = ["ResultStore", "SQLiteStore"]
