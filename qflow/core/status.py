"""Dispatch and node statuses."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The life cycle of a dispatch or a node; members compare equal to their strings.

    Example:
        >>> import qflow
        >>> qflow.status.COMPLETED == "COMPLETED"
        True
    """

    NEW_OBJECT = "NEW_OBJECT"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def word(self) -> str:
        """The status as people say it: ``pending`` for Covalent's ``NEW_OBJECT``.

        Example:
            >>> Status.NEW_OBJECT.word, Status.FAILED.word
            ('pending', 'failed')
        """
        return "pending" if self is Status.NEW_OBJECT else self.value.lower()

    @property
    def is_final(self) -> bool:
        """Whether nothing more will happen to this dispatch or node."""
        return self in _FINAL


_FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
