"""How long ``get_result(wait=...)`` waits: Covalent's ``ct.wait.SHORT`` ... ``EXTREME``.

Example:
    >>> import qflow
    >>> qflow.wait.LONG.seconds, qflow.wait.EXTREME.seconds
    (3000.0, inf)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EXTREME", "LONG", "SHORT", "VERY_LONG", "Wait"]


@dataclass(frozen=True)
class Wait:
    """Wait up to ``seconds`` for a dispatch to end, then return the Result as it is
    (still RUNNING, if it is), as Covalent does; ``timeout=`` raises instead."""

    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", float(self.seconds))

    @property
    def RETRIES(self) -> int:
        return int(min(self.seconds, 2**63 - 1))

    def __int__(self) -> int:
        return self.RETRIES


SHORT = Wait(30)
LONG = Wait(3000)
VERY_LONG = Wait(60000)
EXTREME = Wait(math.inf)
