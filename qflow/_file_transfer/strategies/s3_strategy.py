"""``covalent._file_transfer.strategies.s3_strategy``."""

from qflow.fs_strategies import S3

__all__ = ["S3"]
