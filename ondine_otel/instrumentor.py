"""OndineInstrumentor: trace every `Pipeline.execute()` without touching the job's code.

`_instrument` asks the runtime to attach an observer to every execute() call (and to apply the
safety net around execute and StateManager); `_uninstrument` stops that and removes every
wrapper. `opentelemetry-instrument` finds this class through the `ondine` entry point.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ondine_otel.config import TelemetryConfig, sdk_disabled
from ondine_otel.hooks.observer import RunObserver
from ondine_otel.package import _instruments
from ondine_otel.runtime import runtime


class OndineInstrumentor(BaseInstrumentor):
    """`OndineInstrumentor().instrument(tracer_provider=..., meter_provider=...)`.

    Other keyword arguments are run settings (`pipeline_name`, `llm_span_limit`, ...); what is
    not given comes from the environment (zero-code runs), else the defaults. `listeners`
    (internal) sends the runs' events to given sinks instead of the providers' metrics.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return  # OTEL_SDK_DISABLED=true: every entry is a no-op
        settings = TelemetryConfig.from_settings().observer_settings()
        settings.update({k: kwargs[k] for k in settings if kwargs.get(k) is not None})
        runtime.get().start_auto(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            kwargs.get("listeners"),
            settings,
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        found = runtime.current()
        if found is not None:
            found.stop_auto()

    @property
    def observer(self) -> RunObserver | None:
        """The observer attached to pipelines while instrumented."""
        found = runtime.current()
        return None if found is None else found.auto_observer()
