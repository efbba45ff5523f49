"""Which ready calls of an electron share one Ray task (a pack): as many as its
``pack=N`` says, or, by default, as many as its first calls' timing says pays.

Ray costs about a millisecond per task. An electron whose calls take less than
:data:`SHORT_S` runs its first :data:`PROBES` calls alone, to time them; its later
ready calls then go in packs sized to run about :data:`TARGET_S` each, yet small
enough that at least twice as many packs as the cluster has CPUs are in flight while
that many calls are ready. Never packed unless asked: sublattices, electrons on another
executor (Slurm, a loop's actor, a plugin), with GPUs or custom resources, and
electrons whose outputs have passed :data:`MAX_OUTPUT` bytes.

Example:
    >>> from qflow.core.packing import pack_size_for
    >>> pack_size_for(mean_s=0.0005, alike=10_000, cpus=2)
    100
    >>> pack_size_for(mean_s=0.0005, alike=40, cpus=2)
    10
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qflow.core.graph import NodeKind

__all__ = [
    "MAX_OUTPUT",
    "PROBES",
    "SHORT_S",
    "TARGET_S",
    "PackPolicy",
    "by_default",
    "pack_size_for",
]

#: Calls shorter than this (seconds) are packed by default.
SHORT_S = 0.01
#: How long a pack runs, roughly (seconds).
TARGET_S = 0.05
#: Calls of an electron run alone first, to time it.
PROBES = 2
#: An electron whose outputs have passed this many bytes is never packed by default.
MAX_OUTPUT = 1 << 20


def by_default() -> bool:
    """Whether short electrons are packed unless they say otherwise: yes, unless
    ``QFLOW_PACKING=off`` where the dispatcher runs (``pack=N`` packs either way)."""
    return os.environ.get("QFLOW_PACKING", "on").strip().lower() not in ("off", "0", "false")


def pack_size_for(mean_s: float, alike: int, cpus: float) -> int:
    """Calls per pack for calls of ``mean_s`` seconds, ``alike`` of them ready, on
    ``cpus`` CPUs: about :data:`TARGET_S` of work, and at least two packs per CPU."""
    by_time = int(TARGET_S / max(mean_s, 1e-4))
    by_spread = math.ceil(alike / (2 * max(cpus, 1.0)))
    return max(1, min(by_time, by_spread))


@dataclass
class _Timing:
    runs: int = 0
    #: The fastest call seen: a first call also pays for its imports and a cold
    #: worker, which later calls do not.
    fastest: float = float("inf")
    largest_output: int = 0
    probing: int = 0


def _packable_by_default(call: Any) -> bool:
    opts = call.options
    return (
        call.kind is NodeKind.ELECTRON
        and opts.executor in (None, "ray")
        and not opts.num_gpus
        and not opts.resources
    )


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


class PackPolicy:
    """One dispatch's packing decisions, and what it has learned of each electron.

    Args:
        cpus: the cluster's CPUs, or a callable giving them when first needed.
        probes: False packs nothing by default (calls of electrons with ``pack=N``
            are still packed).
    """

    def __init__(self, cpus: Any, probes: bool = True) -> None:
        self._cpus = cpus
        self._probes = probes
        self._timings: dict[int, _Timing] = {}

    def cpus(self) -> float:
        if callable(self._cpus):
            self._cpus = float(self._cpus())
        return float(self._cpus)

    def size(self, call: Any, alike: Any) -> int | None:
        """How many calls share ``call``'s task (1: its own); None: hold it until its
        electron's first calls are timed. ``alike()`` counts the calls of the same
        electron ready or running, this one included: sizing each pack by them all
        shares them out evenly, rather than in ever smaller packs."""
        pack = call.options.pack
        if call.kind is not NodeKind.ELECTRON or pack is False:
            return 1
        if isinstance(pack, int) and not isinstance(pack, bool):
            return max(1, pack)
        if not _packable_by_default(call) or not self._probes:
            return 1
        timing = self._timings.setdefault(id(call.template), _Timing())
        if timing.runs == 0:
            if timing.probing >= PROBES:
                return None
            timing.probing += 1
            return 1
        fastest = self._short(call)
        return 1 if fastest is None else pack_size_for(fastest, int(alike()), self.cpus())

    def _short(self, call: Any) -> float | None:
        """The fastest timed call of ``call``'s electron when it is short enough to
        pack by default (timed, quick, small outputs); None otherwise."""
        timing = self._timings.get(id(call.template))
        if timing is None or timing.runs == 0 or not self._probes:
            return None
        if not _packable_by_default(call) or call.options.pack not in (None, True):
            return None
        if timing.fastest >= SHORT_S or timing.largest_output > MAX_OUTPUT:
            return None
        return timing.fastest

    def learn(self, call: Any, outcome: Any, output_size: int | None) -> bool:
        """Time one finished call (``output_size``: its pickle's bytes, None when large);
        True when this is its electron's first timing (held calls can go now)."""
        timing = self._timings.get(id(call.template))
        if timing is None:
            return False
        took = _seconds(getattr(outcome, "start_time", None), getattr(outcome, "end_time", None))
        first = timing.runs == 0
        timing.runs += 1
        timing.fastest = min(timing.fastest, took if took is not None else SHORT_S)
        size = MAX_OUTPUT + 1 if output_size is None else output_size
        timing.largest_output = max(timing.largest_output, size)
        return first

    def chain_length(self, call: Any) -> int:
        """How many calls of a linear chain of ``call``'s electron may run fused in one
        task from it (1: none): as many as fill :data:`TARGET_S`, for a short electron
        packed by default, once timed."""
        fastest = self._short(call)
        return 1 if fastest is None else max(1, int(TARGET_S / max(fastest, 1e-4)))

    def waiting(self, call: Any) -> bool:
        """Whether calls of ``call``'s electron are held for its timing."""
        timing = self._timings.get(id(call.template))
        return timing is not None and timing.runs == 0 and timing.probing >= PROBES
