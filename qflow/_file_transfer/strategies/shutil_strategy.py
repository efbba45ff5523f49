"""``covalent._file_transfer.strategies.shutil_strategy``."""

from qflow.core.fs_strategies import Shutil

__all__ = ["Shutil"]
