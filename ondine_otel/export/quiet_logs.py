"""One log line per kind of export failure, not one per batch or retry.

A dead collector makes the OTel exporters log on every batch and every retry. Under ondine,
which hands the root logger to Rich, each line costs ~1.8 ms of the interpreter, on the export
thread but holding the lock the job needs. A filter on the SDK's and exporters' own loggers
(never the root logger or its handlers) keeps that off the job:
- the OTLP exporters' warnings are dropped (counted): the watched exporters
  (`export.watch`) report a failing signal once, with the endpoint and the settings to check,
  and take the exporter's first message from here as the reason;
- of every other SDK logger (the batch processor, the metric reader) the first warning passes.
"""

from __future__ import annotations

import logging
import threading

_PREFIXES = ("opentelemetry.exporter", "opentelemetry.sdk")
_OTLP = "opentelemetry.exporter.otlp"
_MAX_REASON = 300


def _signal_of(logger_name: str) -> str | None:
    if "trace_exporter" in logger_name:
        return "traces"
    if "metric_exporter" in logger_name:
        return "metrics"
    return None


class OncePerLogger(logging.Filter):
    """Drops the OTLP exporters' warnings (keeping the last as a reason), passes the first
    warning of every other SDK logger, and counts what it drops."""

    def __init__(self) -> None:
        super().__init__("ondine_otel.once")
        self._seen: set[str] = set()
        self._reasons: dict[str, str] = {}
        self._lock = threading.Lock()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = record.name
        with self._lock:
            if key.startswith(_OTLP):
                # The first message names the cause (a refused connection, a TLS failure, a
                # 405); later ones only say that retries ran out.
                signal = _signal_of(key) or "other"
                self._reasons.setdefault(signal, record.getMessage()[:_MAX_REASON])
                self.suppressed += 1
                return False
            if key in self._seen:
                self.suppressed += 1
                return False
            self._seen.add(key)
        return True

    def reason(self, signal: str) -> str | None:
        """The first message an OTLP exporter of `signal` logged, if any."""
        with self._lock:
            return self._reasons.get(signal) or self._reasons.get("other")

    def after_fork(self) -> None:
        self._lock = threading.Lock()


def quiet_export_logs(once: OncePerLogger) -> None:
    """Attach `once` (the runtime's) to every SDK and exporter logger that exists
    (idempotent). Call it after the exporters are imported, so their module loggers exist."""
    loggers = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.startswith(_PREFIXES)
    ]
    for logger in loggers:
        if once not in logger.filters:
            logger.addFilter(once)
