"""``covalent._file_transfer.strategies.http_strategy``."""

from qflow.core.fs_strategies import HTTP

__all__ = ["HTTP"]
