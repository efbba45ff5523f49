"""One way to wait for a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    done: Callable[[], bool],
    timeout: float | None,
    *,
    interval: float = 0.2,
    on_timeout: Callable[[], BaseException] | None = None,
    check: Callable[[], None] | None = None,
) -> bool:
    """Poll ``done()`` every ``interval`` seconds until it is true.

    Args:
        done: the condition.
        timeout: seconds to wait at most (None: no limit).
        interval: seconds between polls.
        on_timeout: builds the exception to raise at the deadline; without it,
            return False instead.
        check: called before each poll; raise from it to stop waiting early.

    Returns:
        True once ``done()`` is true; False at the deadline without ``on_timeout``.

    Example:
        >>> calls = iter(range(5))
        >>> wait_until(lambda: next(calls) == 3, timeout=5, interval=0)
        True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        if done():
            return True
        if deadline is not None and time.monotonic() > deadline:
            if on_timeout is not None:
                raise on_timeout()
            return False
        time.sleep(interval)
