"""``covalent._file_transfer.strategies.blob_strategy``."""

from qflow.core.fs_strategies import Blob

__all__ = ["Blob"]
