"""A cap on distinct `pipeline` and `model` label values.

A pipeline name built from a date or a file name would otherwise mint a new series per run and
take Prometheus down with it; past the cap, new values are reported as `other`.
"""

from __future__ import annotations

import threading

from ondine_otel.telemetry.semconv import OVERFLOW_LABEL_VALUE


class _Capped:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OVERFLOW_LABEL_VALUE


class LabelLimiter:
    """Admits the first `limit` distinct values of each capped label, then answers `other`."""

    def __init__(self, limit: int = 100) -> None:
        if limit < 1:
            raise ValueError("label limit must be at least 1")
        self.pipeline = _Capped(limit)
        self.model = _Capped(limit)

    def after_fork(self) -> None:
        """Fresh locks in a forked child (a parent thread may have held them)."""
        for capped in (self.pipeline, self.model):
            capped._lock = threading.Lock()
