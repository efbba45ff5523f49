"""``covalent._file_transfer.strategies.rsync_strategy``."""

from qflow.fs_strategies import Rsync

__all__ = ["Rsync"]
