"""``covalent._file_transfer.strategies.gcloud_strategy``."""

from qflow.core.fs_strategies import GCloud

__all__ = ["GCloud"]
