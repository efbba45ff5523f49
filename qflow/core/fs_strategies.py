"""How files move for ``files=[...]`` transfers: Covalent's ``ct.fs_strategies``.

Each strategy copies one file (or folder) on the machine where the electron runs:
:class:`Shutil` (a local copy), :class:`Rsync` (local, or over SSH with ``host=``),
:class:`HTTP` (download), and the cloud stores :class:`S3`, :class:`GCloud` and
:class:`Blob`, which use their official client libraries when installed.

Example:
    >>> import qflow as ct
    >>> ct.fs_strategies.Rsync(user="me", host="hpc.example.org").remote("/data/x")
    'me@hpc.example.org:/data/x'
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from qflow.exceptions import DependencyError, QflowInputError

__all__ = ["HTTP", "S3", "Blob", "FileTransferStrategy", "GCloud", "Rsync", "Shutil"]


class FileTransferStrategy:
    """Moves files. ``cp`` (local to local), ``download`` and ``upload`` each take the
    source and destination :class:`qflow.fs.File` and return nothing, raising
    :class:`~qflow.exceptions.DependencyError` when the transfer fails."""

    def cp(self, from_file: Any, to_file: Any) -> None:
        raise DependencyError(f"{type(self).__name__} cannot copy between local paths.")

    def download(self, from_file: Any, to_file: Any) -> None:
        raise DependencyError(f"{type(self).__name__} cannot download.")

    def upload(self, from_file: Any, to_file: Any) -> None:
        raise DependencyError(f"{type(self).__name__} cannot upload.")


def _parent(to_file: Any) -> None:
    Path(to_file.filepath).parent.mkdir(parents=True, exist_ok=True)


class Shutil(FileTransferStrategy):
    """A copy between paths this machine sees (a file, or a folder with its contents)."""

    def cp(self, from_file: Any, to_file: Any) -> None:
        src, dst = Path(from_file.filepath), Path(to_file.filepath)
        try:
            _parent(to_file)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)
        except OSError as exc:
            raise DependencyError(f"Copying {src} to {dst} failed: {exc}") from exc

    download = upload = cp


#: Whether this process has logged that local transfers fall back from rsync.
_fallback_logged = False


class Rsync(FileTransferStrategy):
    """``rsync -a``, locally or, with ``host``, over SSH.

    Args:
        user: the SSH user on ``host``.
        host: the remote machine; empty for a local copy.
        private_key_path: an SSH key to use (``ssh -i``).
    """

    def __init__(self, user: str = "", host: str = "", private_key_path: str | None = None) -> None:
        self.user, self.host, self.private_key_path = user, host, private_key_path

    def remote(self, path: str) -> str:
        """``user@host:path``, or just ``path`` with no host."""
        if not self.host:
            return path
        return f"{self.user}@{self.host}:{path}" if self.user else f"{self.host}:{path}"

    def command(self, source: str, destination: str) -> list[str]:
        """The rsync command line for one transfer."""
        cmd = ["rsync", "-a"]
        if self.host:
            ssh = "ssh -o BatchMode=yes"
            if self.private_key_path:
                ssh += f" -i {self.private_key_path}"
            cmd += ["-e", ssh]
        return [*cmd, source, destination]

    def _run(self, source: str, destination: str) -> None:
        if shutil.which("rsync") is None:
            raise DependencyError(
                "The Rsync strategy needs the rsync program where the "
                "electron runs; install it (apt-get install rsync), or use "
                "ct.fs_strategies.Shutil() for a local copy."
            )
        proc = subprocess.run(self.command(source, destination), capture_output=True, text=True)
        if proc.returncode != 0:
            raise DependencyError(
                f"rsync {source} {destination} exited with {proc.returncode}: {proc.stderr.strip()}"
            )

    def _copy_without_rsync(self, from_file: Any, to_file: Any) -> bool:
        """Both ends are local and there is no rsync program: copy as rsync would, with
        Python (a folder's contents, or the folder itself with ``include_folder``); say
        so once in the log. False when rsync is there, or an end is remote."""
        if self.host or shutil.which("rsync") is not None:
            return False
        global _fallback_logged
        if not _fallback_logged:
            _fallback_logged = True
            logging.getLogger("qflow").warning(
                "No rsync program here: local file transfers are copied with Python's "
                "shutil instead (install rsync to use it)."
            )
        target = to_file
        if from_file.is_dir and from_file.include_folder:
            target = type(to_file)(str(Path(to_file.filepath) / Path(from_file.filepath).name))
        Shutil().cp(from_file, target)
        return True

    def cp(self, from_file: Any, to_file: Any) -> None:
        if self._copy_without_rsync(from_file, to_file):
            return
        _parent(to_file)
        self._run(_rsync_source(from_file), to_file.filepath)

    def download(self, from_file: Any, to_file: Any) -> None:
        if self._copy_without_rsync(from_file, to_file):
            return
        _parent(to_file)
        self._run(self.remote(_rsync_source(from_file)), to_file.filepath)

    def upload(self, from_file: Any, to_file: Any) -> None:
        if self._copy_without_rsync(from_file, to_file):
            return
        self._run(_rsync_source(from_file), self.remote(to_file.filepath))


def _rsync_source(file: Any) -> str:
    # "dir/" copies a folder's contents; "dir" the folder itself (include_folder)
    path = file.filepath
    if file.is_dir and not file.include_folder and not path.endswith("/"):
        path += "/"
    return path


class HTTP(FileTransferStrategy):
    """Downloads an ``http(s)://`` URL to a local path (upload is not supported)."""

    def download(self, from_file: Any, to_file: Any) -> None:
        _parent(to_file)
        try:
            with (
                urllib.request.urlopen(from_file.uri, timeout=60) as response,
                open(to_file.filepath, "wb") as out,
            ):
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise DependencyError(f"Downloading {from_file.uri} failed: {exc}") from exc


def _client(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise DependencyError(
            f"This strategy needs {module}; install it with pip install 'qflow-runtime[{extra}]'."
        ) from exc


class S3(FileTransferStrategy):
    """Amazon S3 through boto3 (the ``s3`` extra; the ``quantum`` extra has it too);
    credentials come from the usual AWS sources."""

    def __init__(
        self,
        credentials: str | None = None,
        profile: str | None = None,
        region_name: str | None = None,
    ) -> None:
        self.credentials, self.profile, self.region_name = credentials, profile, region_name

    def _s3(self) -> Any:
        boto3 = _client("boto3", "s3")
        session = boto3.Session(profile_name=self.profile, region_name=self.region_name)
        if session.get_credentials() is None:
            raise DependencyError(
                "S3 transfers need AWS credentials, and none were found: "
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a "
                "profile in ~/.aws/credentials (S3(profile=...))."
            )
        return session.client("s3")

    @staticmethod
    def _split(file: Any) -> tuple[str, str]:
        bucket, _, key = file.filepath.lstrip("/").partition("/")
        if not bucket or not key:
            raise QflowInputError(f"An S3 path is s3://bucket/key; got {file.uri!r}.")
        return bucket, key

    def download(self, from_file: Any, to_file: Any) -> None:
        _parent(to_file)
        self._s3().download_file(*self._split(from_file), to_file.filepath)

    def upload(self, from_file: Any, to_file: Any) -> None:
        self._s3().upload_file(from_file.filepath, *self._split(to_file))


class GCloud(FileTransferStrategy):
    """Google Cloud Storage (the ``gcs`` extra), with application default credentials
    (GOOGLE_APPLICATION_CREDENTIALS)."""

    def _bucket(self, file: Any) -> tuple[Any, str]:
        storage = _client("google.cloud.storage", "gcs")
        bucket, _, key = file.filepath.lstrip("/").partition("/")
        try:
            return storage.Client().bucket(bucket), key
        except Exception as exc:
            raise DependencyError(
                f"Google Cloud Storage is not usable here ({exc}); set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service-account key "
                "file."
            ) from exc

    def download(self, from_file: Any, to_file: Any) -> None:
        _parent(to_file)
        bucket, key = self._bucket(from_file)
        bucket.blob(key).download_to_filename(to_file.filepath)

    def upload(self, from_file: Any, to_file: Any) -> None:
        bucket, key = self._bucket(to_file)
        bucket.blob(key).upload_from_filename(from_file.filepath)


class Blob(FileTransferStrategy):
    """Azure Blob Storage (the ``azure`` extra), with
    ``DefaultAzureCredential`` (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET)."""

    def _client(self, file: Any) -> Any:
        blob = _client("azure.storage.blob", "azure")
        identity = _client("azure.identity", "azure")
        account = f"https://{file.netloc}"
        container, _, name = file.filepath.lstrip("/").partition("/")
        try:
            service = blob.BlobServiceClient(account, credential=identity.DefaultAzureCredential())
            return service.get_blob_client(container=container, blob=name)
        except Exception as exc:
            raise DependencyError(
                f"Azure Blob Storage is not usable here ({exc}); set "
                "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET."
            ) from exc

    def download(self, from_file: Any, to_file: Any) -> None:
        _parent(to_file)
        with open(to_file.filepath, "wb") as out:
            out.write(self._client(from_file).download_blob().readall())

    def upload(self, from_file: Any, to_file: Any) -> None:
        with open(from_file.filepath, "rb") as data:
            self._client(to_file).upload_blob(data, overwrite=True)
