"""One clear warning per signal when exports fail, naming the endpoint and what to check.

The SDK's own lines name neither the endpoint nor the setting (a hanging collector shows up,
if at all, as "shutdown can only be called once"), and they repeat per batch. The watched
exporters delegate every call; on a failed or timed-out export they log one ondine-otel warning
per signal and endpoint for the process (the runtime's once-filter drops repeats): where it
tried to export, why (the exception, the exporter's own last message, or the timeout), and
which settings to check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ondine_otel.config import OtlpSettings
from ondine_otel.telemetry.guard import ONCE_KEY

logger = logging.getLogger("ondine_otel")

#: The first message an exporter of a signal logged (the failure's cause), if any.
Reasons = Callable[[str], "str | None"]


def no_reason(signal: str) -> str | None:
    return None


class _Watch:
    """Reports a signal's failed exports (see the module docstring)."""

    def __init__(self, signal: str, settings: OtlpSettings, reasons: Reasons) -> None:
        self.signal = signal
        self.settings = settings
        self._reasons = reasons

    def failed(self, error: BaseException | None) -> None:
        if error is not None:
            reason = f"{type(error).__name__}: {error}"
        else:
            reason = self._reasons(self.signal) or (
                f"no success within the export timeout ({self.settings.timeout_s:g} s, "
                "OTEL_EXPORTER_OTLP_TIMEOUT)"
            )
        logger.warning(
            "ondine-otel: exporting %s to %s (%s) failed: %s. The job goes on without them. "
            "Check that a collector listens there and speaks %s "
            "(OTEL_EXPORTER_OTLP_%s_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, "
            "OTEL_EXPORTER_OTLP_PROTOCOL; a traces-only backend needs OTEL_METRICS_EXPORTER=none "
            "or a metrics endpoint of its own), or run `ondine-otel check`. Further failures "
            "of this export are not logged.",
            self.signal, self.settings.endpoint, self.settings.protocol, reason,
            self.settings.protocol, self.signal.upper(),
            extra={ONCE_KEY: ("export", self.signal, self.settings.endpoint)},
        )  # fmt: skip


class WatchedSpanExporter(SpanExporter):
    """A span exporter that reports its first failure (see the module docstring)."""

    def __init__(
        self, inner: SpanExporter, settings: OtlpSettings, reasons: Reasons = no_reason
    ) -> None:
        self.inner = inner
        self._watch = _Watch("traces", settings, reasons)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as error:
            self._watch.failed(error)
            raise
        if result is not SpanExportResult.SUCCESS:
            self._watch.failed(None)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class WatchedMetricExporter(MetricExporter):
    """A metric exporter that reports its first failure (see the module docstring)."""

    def __init__(
        self, inner: MetricExporter, settings: OtlpSettings, reasons: Reasons = no_reason
    ) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self._watch = _Watch("metrics", settings, reasons)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as error:
            self._watch.failed(error)
            raise
        if result is not MetricExportResult.SUCCESS:
            self._watch.failed(None)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
