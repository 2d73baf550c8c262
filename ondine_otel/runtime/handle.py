"""`Telemetry`: the handle `instrument()` returns, a view of one set-up and how to stop it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.config import DEFAULTS, TelemetryConfig
from ondine_otel.export.exports import Exports
from ondine_otel.export.providers import PrometheusEndpoint
from ondine_otel.export.pushgateway import PushgatewayPusher
from ondine_otel.hooks.host import Host
from ondine_otel.hooks.observer import RunObserver
from ondine_otel.runtime.signals import SignalHandler


class Owner(Host, Protocol):
    """The runtime, as a handle sees it."""

    def release(self, handle: Telemetry, timeout: float) -> None: ...


class Telemetry:
    """What `instrument()` set up. Use it as a context manager, or call `shutdown()`; an
    interpreter-exit hook also flushes it (bounded) if neither happened."""

    def __init__(self, runtime: Owner, exports: Exports) -> None:
        self._runtime = runtime
        self.exports = exports
        #: The instrumentor that attaches this set-up's observer to every run (set by the
        #: entry that built it; None while telemetry is disabled).
        self.instrumentor: Any = None
        #: A forked worker's own set-up: flushed after every run (Pool workers end with
        #: os._exit, which runs no exit hook).
        self.forked = False
        self.closed = False
        self.signals: SignalHandler | None = None
        #: How the entry started this set-up's instrumentor (run again in a forked worker).
        self.on_built: Callable[[Telemetry], None] | None = None

    @property
    def config(self) -> TelemetryConfig:
        return self.exports.config

    @property
    def enabled(self) -> bool:
        return self.instrumentor is not None

    @property
    def tracer_provider(self) -> TracerProvider | None:
        return self.exports.tracer_provider

    @property
    def meter_providers(self) -> list[MeterProvider]:
        return self.exports.meter_providers

    @property
    def prometheus(self) -> PrometheusEndpoint | None:
        return self.exports.prometheus

    @property
    def pusher(self) -> PushgatewayPusher | None:
        return self.exports.pusher

    @property
    def prometheus_port(self) -> int | None:
        """The port /metrics is served on (useful with port 0), or None."""
        return self.exports.prometheus_port

    def new_observer(self) -> RunObserver:
        """An observer wired like the instrumentor's (same providers, metrics, pushes)."""
        return RunObserver(
            self._runtime,
            self.exports.tracer_provider,
            listeners=self.exports.listeners,
            **self.config.observer_settings(),
        )

    def shutdown(self, timeout: float = DEFAULTS["shutdown_timeout"]) -> None:
        """Stop instrumenting, flush and stop exports; returns within about `timeout` seconds."""
        self._runtime.release(self, timeout)

    def flush_or_shutdown(self, timeout: float, exiting: bool) -> None:
        """Shut down (the process is ending) or flush (the application goes on)."""
        if exiting:
            self.shutdown(timeout=timeout)
        else:
            self.exports.flush(timeout)

    def at_exit(self) -> None:
        self.shutdown(timeout=self.config.otlp_for("traces").timeout_s)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
