"""``covalent._file_transfer.strategies.rsync_strategy``."""

from qflow.core.fs_strategies import Rsync

__all__ = ["Rsync"]
