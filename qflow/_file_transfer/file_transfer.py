"""``covalent._file_transfer.file_transfer``."""

from qflow.fs import FileTransfer, TransferFromRemote, TransferToRemote

__all__ = ["FileTransfer", "TransferFromRemote", "TransferToRemote"]
