"""The secret keep: one 0600 file per secret under ``$QFLOW_HOME/secrets/`` (0700), on
the machine where the dispatcher runs. Values are written and read here only.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> keep = SecretKeep(Path(tempfile.mkdtemp()) / "secrets")
    >>> keep.set("IONQ_API_KEY", "not-a-real-key")
    >>> [entry.name for entry in keep.entries()]
    ['IONQ_API_KEY']
    >>> keep.get("IONQ_API_KEY")
    'not-a-real-key'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from qflow.exceptions import QflowConfigError, QflowInputError, StoreError

__all__ = ["MIN_LENGTH", "SecretEntry", "SecretKeep", "check_name", "secret_names"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

#: Shorter values are refused: they would be redacted wherever those characters
#: appear in an electron's output.
MIN_LENGTH = 4


def check_name(name: object) -> str:
    """``name`` if it can name a secret (an environment variable name), else raise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise QflowInputError(
            f"{name!r} is not a secret name: use letters, digits and underscores, not "
            "starting with a digit (an environment variable name, e.g. IONQ_API_KEY)."
        )
    return name


def secret_names(names: object) -> tuple[str, ...]:
    """``secrets=`` (one name or a list of them) as a tuple of checked names, in order,
    without repeats: the one reading of every place that takes ``secrets=``.

    Example:
        >>> secret_names("IONQ_API_KEY"), secret_names(["A_KEY", "B_KEY", "A_KEY"])
        (('IONQ_API_KEY',), ('A_KEY', 'B_KEY'))
    """
    if isinstance(names, str):
        names = [names]
    if names is None:
        names = ()
    if not isinstance(names, list | tuple | set | frozenset):
        raise QflowConfigError(
            f"secrets takes a list of secret names, e.g. secrets=['IONQ_API_KEY']; got "
            f"{type(names).__name__} {names!r}."
        )
    return tuple(dict.fromkeys(check_name(n) for n in names))


@dataclass(frozen=True)
class SecretEntry:
    """A kept secret's name and when it was set (UTC, ISO 8601); never its value."""

    name: str
    set_at: str


class SecretKeep:
    """The secrets kept in ``folder`` (``$QFLOW_HOME/secrets``).

    Args:
        folder: the keep's folder; made 0700 on the first :meth:`set`.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def of_home(cls, home: Path) -> SecretKeep:
        """The keep of a ``QFLOW_HOME``."""
        return cls(Path(home) / "secrets")

    def set(self, name: str, value: str) -> None:
        """Keep ``value`` as ``name``, replacing any earlier one, atomically."""
        check_name(name)
        if not isinstance(value, str) or len(value.strip()) < MIN_LENGTH:
            raise QflowInputError(
                f"The value for secret {name} is empty or shorter than {MIN_LENGTH} "
                "characters; qflow refuses it, since it redacts a secret's value from "
                "everything an electron prints and so would garble ordinary output."
            )
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(value.strip("\r\n"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"Could not keep secret {name} in {self.folder}: {exc}") from exc

    def get(self, name: str) -> str | None:
        """The value kept as ``name``, or None."""
        try:
            return (self.folder / check_name(name)).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"Could not read secret {name} from {self.folder}: {exc}") from exc

    def entries(self) -> list[SecretEntry]:
        """Every kept secret's name and when it was set, by name."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or not _NAME.fullmatch(path.name):
                continue
            when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            out.append(SecretEntry(path.name, when.isoformat(timespec="seconds")))
        return out

    def remove(self, name: str) -> bool:
        """Forget ``name``; whether it was kept."""
        try:
            (self.folder / check_name(name)).unlink()
        except FileNotFoundError:
            return False
        return True
