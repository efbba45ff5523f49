"""``covalent._file_transfer``: Covalent's module path for :mod:`qflow.fs`."""

from qflow.core.fs import File, FileTransfer, Folder, Order, TransferFromRemote, TransferToRemote

__all__ = ["File", "FileTransfer", "Folder", "Order", "TransferFromRemote", "TransferToRemote"]
