"""OndineInstrumentor: trace every `Pipeline.execute()` without touching the job's code.

While instrumented, one shared OtelObserver is attached to every execute() call by the
safety net in `lifecycle` (which also ends runs exactly once and handles checkpoints).
`opentelemetry-instrument` finds this class through the `ondine` entry point.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ondine_otel.config import sdk_disabled
from ondine_otel.hooks import lifecycle
from ondine_otel.hooks.observer import OtelObserver
from ondine_otel.package import _instruments
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.run import RunListener


class OndineInstrumentor(BaseInstrumentor):
    """`OndineInstrumentor().instrument(tracer_provider=..., meter_provider=...)`."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return  # OTEL_SDK_DISABLED=true: every entry is a no-op
        listener: RunListener | None = kwargs.get("listener")
        lifecycle.install()
        lifecycle.auto_observer = OtelObserver(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            pipeline_name=kwargs.get("pipeline_name") or semconv.DEFAULT_PIPELINE_NAME,
            progress_interval=float(kwargs.get("progress_interval", 5.0)),
            llm_span_limit=int(kwargs.get("llm_span_limit", 1000)),
            capture_content=kwargs.get("capture_content"),
            label_limit=int(kwargs.get("label_limit", 100)),
            listener=listener,
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        lifecycle.auto_observer = None

    @property
    def observer(self) -> OtelObserver | None:
        """The observer attached to pipelines while instrumented."""
        return lifecycle.auto_observer
