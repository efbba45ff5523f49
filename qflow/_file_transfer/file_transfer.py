"""``covalent._file_transfer.file_transfer``."""

from qflow.core.fs import FileTransfer, TransferFromRemote, TransferToRemote

__all__ = ["FileTransfer", "TransferFromRemote", "TransferToRemote"]
