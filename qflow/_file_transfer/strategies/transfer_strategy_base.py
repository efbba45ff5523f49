"""``covalent._file_transfer.strategies.transfer_strategy_base``."""

from qflow.fs_strategies import FileTransferStrategy

__all__ = ["FileTransferStrategy"]
