"""`ondine_otel.instrument()`: one call that sets up traces, metrics and exports for ondine.

The application's own telemetry wins: an SDK provider it installed globally is used as it is
(no exporter is added to it, it is never replaced); only when none is installed do we install
ours. A Prometheus endpoint or Pushgateway asked for is always served from our own reader, so
it works alongside any provider. Shutdown is bounded: a dead collector cannot hold the job's
exit hostage.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
import time
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.config import DEFAULTS, ConfigError, TelemetryConfig
from ondine_otel.export import providers as exporters
from ondine_otel.export.pushgateway import PushgatewayPusher
from ondine_otel.export.quiet_logs import quiet_export_logs
from ondine_otel.export.readers import OndinePeriodicReader
from ondine_otel.hooks import signals
from ondine_otel.hooks.observer import OtelObserver
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.telemetry.fanout import FanOut
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.metrics import metrics_for
from ondine_otel.telemetry.run import RunListener

# Re-entrant: instrument() holds it across check, build and publish, and may shut down the
# previous handle (which takes it too) on the way.
_lock = threading.RLock()
_current: Telemetry | None = None
# Providers we installed as the global ones: after our shutdown they are dead, not the app's.
_ours: set[int] = set()


class Telemetry:
    """The handle `instrument()` returns: what is running, and how to stop it.

    Use it as a context manager, or call `shutdown()`; an interpreter-exit hook also flushes
    it (bounded) if neither happened.
    """

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.tracer_provider: TracerProvider | None = None
        self.meter_providers: list[MeterProvider] = []
        self.prometheus: exporters.PrometheusEndpoint | None = None
        self.pusher: PushgatewayPusher | None = None
        self.instrumentor: OndineInstrumentor | None = None
        self.listener: FanOut | None = None
        self._owned: list[Any] = []  # providers we built and must flush and shut down
        self._readers: list[Any] = []  # the metric readers we built
        self._closed = False
        #: Set in a forked worker's own set-up: flush after every run (Pool workers end with
        #: os._exit, which runs no exit hook).
        self.forked = False

    @property
    def enabled(self) -> bool:
        return self.instrumentor is not None

    @property
    def prometheus_port(self) -> int | None:
        """The port /metrics is served on (useful with port 0), or None."""
        return None if self.prometheus is None else self.prometheus.port

    def new_observer(self) -> OtelObserver:
        """An OtelObserver wired like the instrumentor's (same providers, metrics, pushes)."""
        return OtelObserver(
            self.tracer_provider, listener=self.listener, **self.config.observer_settings()
        )

    def shutdown(self, timeout: float = DEFAULTS["shutdown_timeout"]) -> None:
        """Stop instrumenting, flush and stop exports; returns within about `timeout` seconds."""
        global _current
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _current is self:
                _current = None
        atexit.unregister(self._at_exit)
        signals.uninstall_for(self)
        if self.instrumentor is not None:
            _quietly("uninstrumenting ondine", self.instrumentor.uninstrument)
        deadline = time.monotonic() + timeout
        if self.pusher is not None:
            pusher = self.pusher
            _quietly(
                "stopping the Pushgateway pusher",
                lambda: pusher.close(timeout=max(deadline - time.monotonic(), 0.0)),
            )
        if self.prometheus is not None:
            _quietly("stopping the Prometheus endpoint", self.prometheus.close)
        for provider in self._owned:
            _bounded(provider.shutdown, deadline)

    def _abandon(self) -> None:
        """In a forked child: drop the parent's set-up without exporting what it inherited
        (the parent reports that itself, under its own service.instance.id)."""
        self._closed = True
        atexit.unregister(self._at_exit)
        signals.uninstall_for(self)
        for reader in self._readers:
            if isinstance(reader, OndinePeriodicReader):
                reader.abandon()
        deadline = time.monotonic() + 1.0
        for provider in self._owned:
            _bounded(provider.shutdown, deadline)

    def _at_exit(self) -> None:
        self.shutdown(timeout=self.config.otlp_for("traces").timeout_s)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def instrument(*, reconfigure: bool = False, **settings: Any) -> Telemetry:
    """Trace and meter every ondine run in this process; see the README for the settings.

    Calling it again with the same settings returns the same handle. Different settings raise
    `ConfigError` unless `reconfigure=True`, which shuts the old set-up down first: two set-ups
    at once would double every span and series.
    """
    global _current
    config = TelemetryConfig.from_settings(**settings)
    with _lock:  # two threads must not both build a set-up (they would share one instrumentor)
        current = _current
        if current is not None:
            if current.config == config or (not settings and not reconfigure):
                return current
            if not reconfigure:
                raise ConfigError(
                    "instrument",
                    None,
                    "the same settings, or reconfigure=True",
                    message="ondine-otel is already instrumented with different settings: "
                    "call shutdown() on the first handle, or pass reconfigure=True to replace it",
                )
            current.shutdown()
        telemetry = _build(config)
        _current = telemetry
        return telemetry


def current() -> Telemetry | None:
    """The active handle, if `instrument()` has been called and not shut down."""
    return _current


def _build(config: TelemetryConfig) -> Telemetry:
    telemetry = Telemetry(config)
    if config.disabled:
        return telemetry
    try:
        _start(telemetry, config)
    except BaseException:
        telemetry.shutdown(timeout=1.0)
        raise
    atexit.register(telemetry._at_exit)
    signals.install_for(telemetry)  # SIGTERM: end runs, flush, chain (handle_signals)
    return telemetry


class _FlushAfterRun:
    """In a forked worker's set-up: flush (bounded) as each run ends. Does nothing elsewhere."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def run_started(self, run: Any) -> None:
        pass

    def run_finished(self, run: Any, status: str, duration_s: float) -> None:
        telemetry = self._telemetry
        if telemetry.forked and not telemetry._closed:
            signals.flush(telemetry, telemetry.config.shutdown_timeout, exiting=False)

    def stage_finished(self, run: Any, stage: str, status: str, seconds: float) -> None:
        pass

    def checkpoint_saved(self, run: Any, saved: bool) -> None:
        pass


def _after_fork_in_child() -> None:
    """A forked worker gets a set-up of its own: fresh providers and metric state and its own
    service.instance.id, so its numbers add to the parent's instead of repeating them."""
    global _current, _lock
    _lock = threading.RLock()  # the parent's may have been held by another thread
    parent = _current
    if parent is None or parent._closed or not parent.enabled:
        return
    _current = None
    try:
        parent._abandon()
        config = parent.config
        if config.prometheus_port:  # the parent serves that port: the worker takes any free one
            config = dataclasses.replace(config, prometheus_port=0)
        child = _build(config)
        child.forked = True
        _current = child
    except Exception as error:  # noqa: BLE001 - the worker runs on without telemetry
        report("setting telemetry up again in a forked worker", error)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _start(telemetry: Telemetry, config: TelemetryConfig) -> None:
    resource = exporters.build_resource(config)
    wants_registry = config.prometheus_address is not None or config.pushgateway_url is not None
    if wants_registry:
        telemetry.prometheus = exporters.PrometheusEndpoint(config.prometheus_process_metrics)
    if config.prometheus_address is not None and telemetry.prometheus is not None:
        host, port = config.prometheus_address
        try:
            telemetry.prometheus.serve(host, port)
        except OSError as error:
            raise ConfigError(
                "prometheus_port",
                port,
                "a free port (or 0 to let the OS choose)",
                message=f"cannot serve Prometheus metrics on {host}:{port} ({error}); set "
                "OTEL_EXPORTER_PROMETHEUS_PORT / prometheus_port to a free port, or 0",
            ) from error

    # Traces: the application's SDK provider as it is, else ours (installed globally).
    app_tracer = trace.get_tracer_provider()
    if isinstance(app_tracer, SdkTracerProvider) and id(app_tracer) not in _ours:
        telemetry.tracer_provider = app_tracer
    else:
        provider = exporters.build_tracer_provider(config, resource)
        telemetry._owned.append(provider)
        telemetry.tracer_provider = provider
        if not isinstance(app_tracer, SdkTracerProvider):
            trace.set_tracer_provider(provider)
            _ours.add(id(provider))

    # Metrics: the application's SDK provider as it is, plus our own for pull/push if asked.
    app_meter = metrics.get_meter_provider()
    app_owned = isinstance(app_meter, SdkMeterProvider) and id(app_meter) not in _ours
    readers: list[MetricReader]
    if app_owned:
        telemetry.meter_providers.append(app_meter)
        readers = [telemetry.prometheus.reader] if telemetry.prometheus is not None else []
    else:
        readers = exporters.metric_readers(config, telemetry.prometheus)
    listeners: list[RunListener] = []
    if app_owned:
        listeners.append(metrics_for(app_meter, label_limit=config.label_limit))
    if readers:
        own = exporters.build_meter_provider(config, resource, readers)
        telemetry._owned.append(own)
        telemetry.meter_providers.append(own)
        if not isinstance(app_meter, SdkMeterProvider):
            metrics.set_meter_provider(own)
            _ours.add(id(own))
        own_metrics = exporters.produced_metrics(own, config, resource, readers)
        listeners.append(own_metrics)
        if config.pushgateway_url is not None and telemetry.prometheus is not None:
            telemetry.pusher = PushgatewayPusher(
                config.pushgateway_url,
                telemetry.prometheus.registry,
                pipeline_label=own_metrics.labels.pipeline,
                interval=config.push_interval,
                username=config.pushgateway_username,
                password=config.pushgateway_password,
                grouping=config.pushgateway_grouping,
                home_pipeline=config.pipeline_name,
            )
            listeners.append(telemetry.pusher)

    listeners.append(_FlushAfterRun(telemetry))
    telemetry._readers = readers
    quiet_export_logs()  # the exporters are imported by now: one line per failure kind
    telemetry.listener = FanOut(listeners)
    instrumentor = OndineInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()  # e.g. zero-code instrumentation already did it, bare
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        listener=telemetry.listener,
        **config.observer_settings(),
    )
    telemetry.instrumentor = instrumentor


def _quietly(site: str, action: Any) -> None:
    try:
        action()
    except Exception as error:  # noqa: BLE001 - shutting down must finish
        report(site, error)


def _bounded(action: Any, deadline: float) -> None:
    """Run `action` on a daemon thread and wait no later than `deadline`."""
    worker = threading.Thread(
        target=_quietly, args=("shutting down a provider", action), daemon=True
    )
    worker.start()
    worker.join(timeout=max(deadline - time.monotonic(), 0.0))
