"""Keep Python's full garbage collections cheap in a process that dispatches."""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_settled = False


def settle_heap() -> bool:
    """Collect once, then move every object alive now out of the collector's way.

    A full collection scans every tracked object in the process, and with Ray and
    PennyLane imported those are many: each full collection stalls the dispatcher. A large
    dispatch allocates enough to set one off every few dispatches. Frozen objects are
    never scanned again, so later full collections cost what the dispatches' own
    objects cost. What is frozen is what was alive at start-up (modules, classes,
    functions), collected first so that no garbage is kept; it is still freed as usual
    when its reference count drops, and only a cycle among those objects that becomes
    garbage later stays. Done once per process; ``QFLOW_FREEZE_GC=0`` turns it off.

    Returns:
        True the first time (the heap was settled), False after.
    """
    global _settled
    with _lock:
        if _settled:
            return False
        _settled = True
    gc.collect()
    gc.freeze()
    return True
