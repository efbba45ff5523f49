"""File transfers around an electron: Covalent's ``ct.fs``.

``@ct.electron(files=[ct.fs.FileTransfer(src, dst)])`` copies ``src`` to ``dst`` on the
machine where the electron runs, before it runs (``order=Order.BEFORE``, the default)
or after (``Order.AFTER``). The electron receives ``files``, the list of
``(from, to)`` paths, when its signature takes a ``files`` argument.

Example:
    >>> import qflow as ct
    >>> ft = ct.fs.FileTransfer("/data/in.csv", "/scratch/in.csv")
    >>> ft.from_file.filepath, ft.to_file.filepath, ft.order, type(ft.strategy).__name__
    ('/data/in.csv', '/scratch/in.csv', <Order.BEFORE: 'before'>, 'Rsync')
"""

from __future__ import annotations

import os
import tempfile
from enum import StrEnum
from typing import Any
from urllib.parse import urlparse

from qflow.core import fs_strategies
from qflow.core.arguments import one_or_many
from qflow.exceptions import QflowInputError

__all__ = ["File", "FileTransfer", "Folder", "Order", "TransferFromRemote", "TransferToRemote"]


class Order(StrEnum):
    """Whether a transfer runs before or after its electron."""

    BEFORE = "before"
    AFTER = "after"


_LOCAL_SCHEMES = {"", "file"}
_STRATEGIES = {
    "": fs_strategies.Rsync,
    "file": fs_strategies.Rsync,
    "http": fs_strategies.HTTP,
    "https": fs_strategies.HTTP,
    "s3": fs_strategies.S3,
    "gs": fs_strategies.GCloud,
}


class File:
    """A path or URL: ``/a/b``, ``file:///a/b``, ``https://...``, ``s3://bucket/key``,
    ``gs://bucket/key``, ``https://<account>.blob.core.windows.net/<container>/<name>``.

    Args:
        filepath: the path or URL; None makes a new temporary file path.
        is_remote: the path is on another machine (e.g. a ``file://`` path reached over
            rsync+SSH).
        is_dir: a folder.
        include_folder: with ``is_dir``, copy the folder itself, not only its contents.
    """

    def __init__(
        self,
        filepath: str | None = None,
        is_remote: bool = False,
        is_dir: bool = False,
        include_folder: bool = False,
    ) -> None:
        if filepath is None:
            fd, filepath = tempfile.mkstemp(prefix="qflow-")
            os.close(fd)
        if not isinstance(filepath, str) or not filepath:
            raise QflowInputError(f"A File takes a path or URL string; got {filepath!r}.")
        parsed = urlparse(filepath)
        self.scheme = parsed.scheme.lower()
        if len(self.scheme) == 1:  # a Windows drive letter, not a scheme
            self.scheme = ""
        self.netloc = parsed.netloc
        self.uri = filepath if self.scheme else f"file://{os.path.abspath(filepath)}"
        self.filepath = parsed.path if self.scheme else filepath
        self.is_remote = is_remote or self.scheme not in _LOCAL_SCHEMES
        self.is_dir = is_dir or filepath.endswith("/")
        self.include_folder = include_folder

    @property
    def mapped_strategy_type(self) -> str:
        if self.netloc.endswith(".blob.core.windows.net"):
            return "Blob"
        return _STRATEGIES.get(self.scheme, fs_strategies.FileTransferStrategy).__name__

    def default_strategy(self) -> fs_strategies.FileTransferStrategy | None:
        if self.netloc.endswith(".blob.core.windows.net"):
            return fs_strategies.Blob()
        cls = _STRATEGIES.get(self.scheme)
        return cls() if cls is not None else None

    def __repr__(self) -> str:
        return f"File({self.uri!r}{', remote' if self.is_remote else ''})"


class Folder(File):
    """A folder; ``include_folder=True`` copies the folder itself, not only its contents."""

    def __init__(
        self, filepath: str | None = None, is_remote: bool = False, include_folder: bool = False
    ) -> None:
        if filepath is None:
            filepath = tempfile.mkdtemp(prefix="qflow-") + "/"
        super().__init__(filepath, is_remote=is_remote, is_dir=True, include_folder=include_folder)


def _as_file(value: File | str | None, what: str) -> File:
    if value is None or isinstance(value, str):
        return File(value)
    if isinstance(value, File):
        return value
    raise QflowInputError(
        f"FileTransfer's {what} is a path, a URL or a qflow.fs.File; got "
        f"{type(value).__name__} {value!r}."
    )


class FileTransfer:
    """One copy from ``from_file`` to ``to_file`` around an electron.

    Args:
        from_file: the source path, URL or :class:`File`.
        to_file: the destination; None makes a temporary file.
        order: :attr:`Order.BEFORE` (default) or :attr:`Order.AFTER` the electron.
        strategy: how to copy; by default chosen from the URLs' schemes (rsync for
            paths, HTTP for ``http(s)://``, S3, GCloud, Blob).

    Raises:
        QflowInputError: both ends remote, or no strategy for these schemes.
    """

    def __init__(
        self,
        from_file: File | str | None = None,
        to_file: File | str | None = None,
        order: Order | str = Order.BEFORE,
        strategy: fs_strategies.FileTransferStrategy | None = None,
    ) -> None:
        self.from_file = _as_file(from_file, "from_file")
        self.to_file = _as_file(to_file, "to_file")
        try:
            self.order = Order(order)
        except ValueError:
            raise QflowInputError(f"order is Order.BEFORE or Order.AFTER; got {order!r}.") from None
        if self.from_file.is_remote and self.to_file.is_remote:
            raise QflowInputError(
                f"A transfer from {self.from_file.uri} to {self.to_file.uri} has both ends "
                "remote; one end must be a path on the machine that runs the electron."
            )
        remote = self.from_file if self.from_file.is_remote else self.to_file
        chosen = strategy or remote.default_strategy()
        if chosen is None:
            raise QflowInputError(
                f"No transfer strategy for {remote.uri!r}; pass strategy= (one of "
                f"{', '.join(fs_strategies.__all__[1:])} in qflow.fs_strategies)."
            )
        self.strategy = chosen

    def run(self) -> tuple[str, str]:
        """Do the transfer where this runs; return ``(from path, to path)``."""
        if self.from_file.is_remote:
            self.strategy.download(self.from_file, self.to_file)
        elif self.to_file.is_remote:
            self.strategy.upload(self.from_file, self.to_file)
        else:
            self.strategy.cp(self.from_file, self.to_file)
        return self.from_file.filepath, self.to_file.filepath

    def __repr__(self) -> str:
        return (
            f"FileTransfer({self.from_file.uri!r} -> {self.to_file.uri!r}, "
            f"{self.order.value}, {type(self.strategy).__name__})"
        )


def TransferFromRemote(
    from_filepath: str,
    to_filepath: str | None = None,
    strategy: fs_strategies.FileTransferStrategy | None = None,
    order: Order = Order.BEFORE,
) -> FileTransfer:
    """Fetch a remote file before the electron runs (the source is remote even as a
    plain path: reached by rsync over SSH, say)."""
    return FileTransfer(
        File(from_filepath, is_remote=True), to_filepath, order=Order.BEFORE, strategy=strategy
    )


def TransferToRemote(
    to_filepath: str,
    from_filepath: str | None = None,
    strategy: fs_strategies.FileTransferStrategy | None = None,
    order: Order = Order.AFTER,
) -> FileTransfer:
    """Send a file to a remote place after the electron runs."""
    return FileTransfer(
        from_filepath, File(to_filepath, is_remote=True), order=Order.AFTER, strategy=strategy
    )


def as_transfers(value: Any) -> tuple[FileTransfer, ...]:
    """Normalise ``files=``: a FileTransfer or a list of them."""
    return one_or_many(
        value,
        FileTransfer,
        lambda bad: (
            f"files= takes qflow.fs.FileTransfer objects; got {bad!r}. Pass e.g. "
            "files=[ct.fs.FileTransfer('/data/in', '/scratch/in')]."
        ),
    )
