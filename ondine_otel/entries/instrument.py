"""`ondine_otel.instrument()`: one call that sets up traces, metrics and exports for ondine."""

from __future__ import annotations

from typing import Any

from ondine_otel.config import TelemetryConfig
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.runtime import runtime
from ondine_otel.runtime.handle import Telemetry


def instrument(*, reconfigure: bool = False, **settings: Any) -> Telemetry:
    """Trace and meter every ondine run in this process; see the README for the settings.

    Calling it again with the same settings returns the same handle. Different settings raise
    `ConfigError` unless `reconfigure=True`, which shuts the old set-up down first: two set-ups
    at once would double every span and series.
    """
    config = TelemetryConfig.from_settings(**settings)
    return runtime.get().set_up(
        config, explicit=bool(settings), reconfigure=reconfigure, on_built=_instrument_with
    )


def current() -> Telemetry | None:
    """The active handle, if `instrument()` has been called and not shut down."""
    found = runtime.current()
    return None if found is None else found.handle


def _instrument_with(handle: Telemetry) -> None:
    """Attach the set-up's observer to every run, through the instrumentor (so zero-code
    instrumentation and `instrument()` share one instrumentor state)."""
    instrumentor = OndineInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()  # e.g. zero-code instrumentation already did it, bare
    instrumentor.instrument(
        tracer_provider=handle.tracer_provider,
        listeners=handle.exports.listeners,
        **handle.config.observer_settings(),
    )
    handle.instrumentor = instrumentor
