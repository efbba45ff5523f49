"""``covalent._file_transfer.strategies.blob_strategy``."""

from qflow.fs_strategies import Blob

__all__ = ["Blob"]
