"""``covalent._file_transfer.strategies``: :mod:`qflow.fs_strategies`."""

from qflow.core.fs_strategies import HTTP, S3, Blob, FileTransferStrategy, GCloud, Rsync, Shutil

__all__ = ["HTTP", "S3", "Blob", "FileTransferStrategy", "GCloud", "Rsync", "Shutil"]
