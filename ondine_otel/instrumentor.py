"""OndineInstrumentor: trace every `Pipeline.execute()` without touching the job's code.

`_instrument` applies the safety net (`hooks.lifecycle`: wrappers around execute and
StateManager) and sets the OtelObserver it attaches to every execute() call; `_uninstrument`
removes every wrapper again. `opentelemetry-instrument` finds this class through the `ondine`
entry point.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from ondine_otel.config import RUN_SETTINGS, TelemetryConfig, sdk_disabled
from ondine_otel.hooks import lifecycle
from ondine_otel.hooks.observer import OtelObserver
from ondine_otel.package import _instruments
from ondine_otel.telemetry.run import RunListener

#: Keyword arguments of `instrument()` passed on to the observer (run settings).
_OBSERVER_SETTINGS = (*RUN_SETTINGS, "label_limit")


class OndineInstrumentor(BaseInstrumentor):
    """`OndineInstrumentor().instrument(tracer_provider=..., meter_provider=...)`."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return  # OTEL_SDK_DISABLED=true: every entry is a no-op
        listener: RunListener | None = kwargs.get("listener")
        # What the caller passed, else the environment (zero-code runs), else the defaults.
        settings = TelemetryConfig.from_settings().observer_settings()
        settings.update({k: kwargs[k] for k in _OBSERVER_SETTINGS if kwargs.get(k) is not None})
        lifecycle.install()
        lifecycle.auto_observer = OtelObserver(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            listener=listener,
            **settings,
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        lifecycle.uninstall()

    @property
    def observer(self) -> OtelObserver | None:
        """The observer attached to pipelines while instrumented."""
        return lifecycle.auto_observer
