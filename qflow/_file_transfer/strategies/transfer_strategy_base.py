"""``covalent._file_transfer.strategies.transfer_strategy_base``."""

from qflow.core.fs_strategies import FileTransferStrategy

__all__ = ["FileTransferStrategy"]
