"""One log line per kind of export failure, not one per batch or retry.

A dead collector makes the OTel exporters log on every batch and every retry. Under ondine,
which hands the root logger to Rich, each line costs ~1.8 ms of the interpreter, on the export
thread but holding the lock the job needs. A filter on the SDK's and exporters' own loggers
(never the root logger or its handlers) lets the first record of each message through and
counts the rest. A logger is one component (the HTTP span exporter, the gRPC exporter, the
batch processor): its first line says what failed; its retries and repeats add nothing.
"""

from __future__ import annotations

import logging
import threading

_PREFIXES = ("opentelemetry.exporter", "opentelemetry.sdk")


class OncePerLogger(logging.Filter):
    """Passes the first warning or error of each logger; drops the later ones (counted)."""

    def __init__(self) -> None:
        super().__init__("ondine_otel.once")
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = record.name
        with self._lock:
            if key in self._seen:
                self.suppressed += 1
                return False
            self._seen.add(key)
        return True


ONCE = OncePerLogger()


def quiet_export_logs() -> None:
    """Attach the filter to every SDK and exporter logger that exists (idempotent).

    Call it after the exporters are imported, so their module loggers exist.
    """
    loggers = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.startswith(_PREFIXES)
    ]
    for logger in loggers:
        if ONCE not in logger.filters:
            logger.addFilter(ONCE)
