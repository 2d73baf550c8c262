"""Resident memory of this process: now, and the highest a sampler saw."""

from __future__ import annotations

import os
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; elsewhere the lifetime peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakSampler(threading.Thread):
    """Polls RSS every 10 ms until stopped and keeps the maximum (cheap: one small read)."""

    def __init__(self) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.peak = rss_bytes()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=5)
        self.peak = max(self.peak, rss_bytes())
        return self.peak
