"""``covalent._file_transfer.strategies.s3_strategy``."""

from qflow.core.fs_strategies import S3

__all__ = ["S3"]
