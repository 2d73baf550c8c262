"""What `instrument()` sets up for one configuration: providers, readers, endpoint, pusher.

The application's own telemetry wins: an SDK provider it installed globally is used as it is
(no exporter is added to it, it is never replaced); only when none is installed do we install
ours. A Prometheus endpoint or Pushgateway asked for is always served from our own reader, so
it works alongside any provider. Shutdown is bounded: a dead collector cannot hold the job's
exit hostage.

A busy Prometheus port does not stop the job (telemetry never breaks the observed job, under
every entry): the endpoint is left out, the rest (traces, OTLP, Pushgateway) runs, and one
warning names the port, the setting and the fix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.config import TelemetryConfig
from ondine_otel.export import bridge
from ondine_otel.export import providers as build
from ondine_otel.export.pushgateway import PushgatewayPusher
from ondine_otel.export.watch import Reasons, no_reason
from ondine_otel.telemetry.guard import quietly, report
from ondine_otel.telemetry.metrics import OndineMetrics
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RunListener

logger = logging.getLogger("ondine_otel")


def bind_metrics(metrics_: OndineMetrics, provider: MeterProvider) -> None:
    """Report `metrics_` to `provider`: produced points through the bridge where its readers
    take them, else the SDK instruments."""
    produced = isinstance(provider, SdkMeterProvider) and bridge.attach_provider(
        provider, metrics_.points
    )
    metrics_.bind(provider, produced=produced)


#: Of a shutdown's timeout, what is kept for leaving the waits and stopping the rest.
_STOP_MARGIN_S = 0.05


class Exports:
    """The providers, readers, endpoint and pusher one configuration set up."""

    def __init__(
        self, config: TelemetryConfig, registry: RunRegistry, reasons: Reasons = no_reason
    ) -> None:
        self.config = config
        self._reasons = reasons
        self.metrics = OndineMetrics(registry, label_limit=config.label_limit)
        self.tracer_provider: TracerProvider | None = None
        self.meter_providers: list[MeterProvider] = []
        self.prometheus: build.PrometheusEndpoint | None = None
        self.pusher: PushgatewayPusher | None = None
        self.listeners: tuple[RunListener, ...] = ()
        self.readers: list[MetricReader] = []
        self._owned: list[Any] = []  # providers we built and must flush and shut down

    @property
    def prometheus_port(self) -> int | None:
        """The port /metrics is served on (useful with port 0), or None."""
        return None if self.prometheus is None else self.prometheus.port

    # --- set-up ----------------------------------------------------------------------------
    def start(self, registry: RunRegistry, ours: set[int]) -> None:
        """Build everything the config asks for. `ours`: ids of providers ondine-otel
        installed globally (after our shutdown they are dead, not the application's)."""
        config = self.config
        resource = build.build_resource(config)
        if config.prometheus_address is not None or config.pushgateway_url is not None:
            self.prometheus = build.PrometheusEndpoint(config.prometheus_process_metrics)
        if config.prometheus_address is not None and self.prometheus is not None:
            self._serve(self.prometheus, *config.prometheus_address)

        # Traces: the application's SDK provider as it is, else ours (installed globally).
        app_tracer = trace.get_tracer_provider()
        if isinstance(app_tracer, SdkTracerProvider) and id(app_tracer) not in ours:
            self.tracer_provider = app_tracer
        else:
            provider = build.build_tracer_provider(config, resource, self._reasons)
            self._owned.append(provider)
            self.tracer_provider = provider
            if not isinstance(app_tracer, SdkTracerProvider):
                trace.set_tracer_provider(provider)
                ours.add(id(provider))

        # Metrics: the application's SDK provider as it is, plus our own for pull/push if asked.
        app_meter = metrics.get_meter_provider()
        app_owned = isinstance(app_meter, SdkMeterProvider) and id(app_meter) not in ours
        if app_owned:
            self.meter_providers.append(app_meter)
            bind_metrics(self.metrics, app_meter)
            readers: list[MetricReader] = (
                [self.prometheus.reader] if self.prometheus is not None else []
            )
        else:
            readers = build.metric_readers(config, self.prometheus, self._reasons)
        listeners: list[RunListener] = [self.metrics]
        if readers:
            own = build.build_meter_provider(config, resource, readers)
            self._owned.append(own)
            self.meter_providers.append(own)
            if not isinstance(app_meter, SdkMeterProvider):
                metrics.set_meter_provider(own)
                ours.add(id(own))
            bind_metrics(self.metrics, own)
            if config.pushgateway_url is not None and self.prometheus is not None:
                self.pusher = PushgatewayPusher(
                    config.pushgateway_url,
                    self.prometheus.registry,
                    runs=registry,
                    pipeline_label=self.metrics.labels.pipeline,
                    interval=config.push_interval,
                    username=config.pushgateway_username,
                    password=config.pushgateway_password,
                    grouping=config.pushgateway_grouping,
                    home_pipeline=config.pipeline_name,
                )
                listeners.append(self.pusher)
        self.readers = readers
        self.listeners = tuple(listeners)

    def _serve(self, endpoint: build.PrometheusEndpoint, host: str, port: int) -> None:
        try:
            endpoint.serve(host, port)
        except OSError as error:
            logger.warning(
                "ondine-otel: cannot serve Prometheus metrics on %s:%s (%s). The job runs; "
                "/metrics is not served (traces, OTLP and Pushgateway pushes still work). "
                "Set OTEL_EXPORTER_PROMETHEUS_PORT / prometheus_port to a free port, or 0 to "
                "let the OS choose.",
                host, port, error,
            )  # fmt: skip

    # --- flush and stop --------------------------------------------------------------------
    def flush(self, timeout: float) -> None:
        """Send what is queued (pushes, spans, metrics) without stopping anything."""
        if self.pusher is not None:
            self.pusher.flush(timeout)
        millis = int(timeout * 1000)
        for provider in [self.tracer_provider, *self.meter_providers]:
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                try:
                    force_flush(millis)
                except Exception as error:  # noqa: BLE001 - flushing must not raise
                    report("flushing telemetry", error)

    def shutdown(self, timeout: float) -> None:
        """Final pushes, stop serving, shut our providers down; within `timeout` s (a slice
        of it is kept for what follows the last wait: a dead collector takes all it gets)."""
        deadline = time.monotonic() + max(timeout - min(_STOP_MARGIN_S, timeout / 10), 0.0)
        if self.pusher is not None:
            pusher = self.pusher
            quietly(
                "stopping the Pushgateway pusher",
                lambda: pusher.close(timeout=max(deadline - time.monotonic(), 0.0)),
            )
        if self.prometheus is not None:
            quietly("stopping the Prometheus endpoint", self.prometheus.close)
        for provider in self._owned:
            bounded(provider.shutdown, deadline)

    def abandon(self) -> None:
        """In a forked child: drop the parent's set-up without exporting what it inherited
        (the parent reports that itself, under its own service.instance.id)."""
        for reader in self.readers:
            bridge.silence(reader)
        deadline = time.monotonic() + 1.0
        for provider in self._owned:
            bounded(provider.shutdown, deadline)


def bounded(action: Callable[[], Any], deadline: float) -> None:
    """Run `action` on a daemon thread and wait no later than `deadline`."""
    worker = threading.Thread(
        target=quietly, args=("shutting down a provider", action), daemon=True
    )
    worker.start()
    worker.join(timeout=max(deadline - time.monotonic(), 0.0))
