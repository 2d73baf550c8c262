"""Time spent in the garbage collector during a run, and its full collections.

Python's full collections walk every object alive, so a variant that keeps more objects alive
(or promotes more to the oldest generation) can add one to a run: ≈ 50 ms on a 10k-row run,
several per cent. The totals separate that from the per-call cost.
"""

from __future__ import annotations

import gc
import time
from typing import Any


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
