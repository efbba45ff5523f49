"""``covalent._file_transfer.enums``."""

from qflow.fs import Order

__all__ = ["Order"]
