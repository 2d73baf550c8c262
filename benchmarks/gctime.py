"""Time spent in the garbage collector during a run, its full collections, and where in the
collector's cycle a run starts.

Python's full collections walk every object alive, so a variant that keeps more objects alive
(or promotes more to the oldest generation) can add one to a run: ≈ 60 ms on a 10k-row run,
several per cent. The totals separate that from the per-call cost.

CPython (3.10-3.13) collects the oldest generation once the objects promoted into it since its
last collection reach a quarter of what that collection left (and more than 10 collections of
the middle one have run, which any run does). A run that starts right after a full collection
always starts at the same point of that cycle: if the bare run happens to end just short of
one more full collection, a variant that keeps a few hundred more objects alive pays a whole
one (≈ 60 ms) in most rounds, although in a process that starts the job at an arbitrary point
it would pay a hundredth of that. `start_cycle_at` moves the start
to a chosen point, so rounds can spread it the way real processes do.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any


def start_cycle_at(fraction: float) -> None:
    """After a full collection, count `fraction` (0-1) of the way to the next one, leaving no
    object behind: as many empty lists as that share of the oldest generation's threshold are
    promoted by a collection of the younger two (the promotion counter keeps them when they are
    freed). Call right after `gc.collect()`. Does nothing on Python 3.14+, whose incremental
    collector has no such cycle."""
    if not 0.0 < fraction < 1.0 or sys.version_info >= (3, 14):
        return
    ballast: list[list[None]] = [
        [] for _ in range(int(fraction * len(gc.get_objects(generation=2)) / 4))
    ]
    gc.collect(1)
    del ballast


class GcClock:
    """Sums the collector's pauses between `start()` and `stop()` (a `gc.callbacks` entry)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0  # collections of the oldest generation
        self._began = 0.0
        self._on = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if not self._on:
            return
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._began
        if info.get("generation") == 2:
            self.full += 1

    def start(self) -> None:
        self.seconds, self.full, self._on = 0.0, 0, True
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        self._on = False
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
