"""``covalent._file_transfer.enums``."""

from qflow.core.fs import Order

__all__ = ["Order"]
