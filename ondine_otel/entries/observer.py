"""`OtelObserver`: add telemetry to one pipeline with `pipeline.add_observer(OtelObserver())`."""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.hooks.observer import RunObserver
from ondine_otel.runtime import runtime


class OtelObserver(RunObserver):
    """ondine's execution hooks as a trace and metrics.

    With no providers given, runs report where `instrument()` set up (if it was called), else
    to the global providers, looked up when each run starts. Keyword arguments are run settings
    (`pipeline_name`, `llm_span_limit`, ...).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(runtime.get(), tracer_provider, meter_provider, **settings)
