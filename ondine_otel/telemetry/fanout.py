"""Several RunListeners as one: metrics first, then the sinks that read them (Pushgateway).

Order matters: a run's final push must see the counters the metrics listener just settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.run import RunListener, RunTelemetry


class FanOut:
    """Calls each listener in order; one failing listener does not starve the others."""

    def __init__(self, listeners: Sequence[RunListener]) -> None:
        self.listeners = tuple(listeners)
        # Bound once: these run for every LLM call, unguarded here (the caller guards).
        self.call_sinks = tuple(
            sink for listener in self.listeners for sink in getattr(listener, "call_sinks", ())
        )

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for listener in self.listeners:
            self._call(getattr(listener, method), *args, **kwargs)

    @staticmethod
    def _call(bound: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            report(getattr(bound, "__qualname__", "a run listener"), error)

    def run_started(self, run: RunTelemetry) -> None:
        self._each("run_started", run)

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        self._each("run_finished", run, status, duration_s)

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        self._each("stage_finished", run, stage, status, seconds)

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        self._each("checkpoint_saved", run, saved)
