"""Building providers, readers and exporters from a TelemetryConfig.

Everything here is explicit: exporters get their endpoint, headers, timeout and compression
from the validated config instead of re-reading the environment, so what runs is what
`ondine-otel check` printed. Queues and timeouts are bounded: a dead collector costs at most a
timeout per export on a background thread, never the job's time.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import threading
import uuid
from typing import Any

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from ondine_otel.config import OtlpSettings, TelemetryConfig
from ondine_otel.export.prometheus_reader import PortablePrometheusReader
from ondine_otel.export.registry import SerialRegistry
from ondine_otel.export.sampler import RandomBitsRatioSampler
from ondine_otel.export.watch import (
    Reasons,
    WatchedMetricExporter,
    WatchedSpanExporter,
    no_reason,
)
from ondine_otel.telemetry.instruments import metric_views

#: Bounded export queue: a stalled collector drops spans instead of growing memory.
SPAN_QUEUE_SIZE = 2048


def build_resource(config: TelemetryConfig) -> Resource:
    """service.name and OTEL_RESOURCE_ATTRIBUTES-style attributes from the config.

    Each process gets its own `service.instance.id` unless one is configured: parallel workers
    of one job exporting OTLP metrics would otherwise write the same series and overwrite each
    other (Prometheus' OTLP receiver makes it the `instance` label).
    """
    attributes: dict[str, Any] = dict(config.resource_attributes)
    attributes["service.name"] = config.service_name
    attributes.setdefault("service.instance.id", str(uuid.uuid4()))
    return Resource.create(attributes)


def build_sampler(config: TelemetryConfig) -> Sampler:
    """The configured sampler; ratio samplers draw on the id's random bits (see sampler.py)."""
    name = config.traces_sampler.removeprefix("ondine_")
    if name in ("traceidratio", "parentbased_traceidratio"):
        root: Sampler = RandomBitsRatioSampler(config.sampler_ratio)
    else:
        root = ALWAYS_OFF if name.endswith("always_off") else ALWAYS_ON
    return ParentBased(root) if name.startswith("parentbased_") else root


def _compression(settings: OtlpSettings, grpc: bool) -> Any:
    if settings.compression != "gzip":
        return None
    if grpc:
        from grpc import Compression

        return Compression.Gzip
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

    return HttpCompression.Gzip


def _otlp_exporter(settings: OtlpSettings, signal: str, class_name: str) -> Any:
    """The OTLP exporter class `class_name` for `signal`, over grpc or http/protobuf.

    Imported lazily: a job exporting over HTTP never loads grpcio.
    """
    headers = dict(settings.headers)
    if settings.protocol == "grpc":
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{signal}")
        return getattr(module, class_name)(
            endpoint=settings.endpoint,
            insecure=settings.endpoint.startswith("http://"),
            credentials=_grpc_credentials(settings),
            headers=headers,
            timeout=settings.timeout_s,
            compression=_compression(settings, grpc=True),
        )
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{signal}")
    extra: dict[str, Any] = {}
    if settings.certificate is not None:
        extra["session"] = _certificate_session()
    return getattr(module, class_name)(
        endpoint=settings.endpoint,
        certificate_file=settings.certificate,
        headers=headers,
        timeout=settings.timeout_s,
        compression=_compression(settings, grpc=False),
        **extra,
    )


def _certificate_session() -> Any:
    """A requests Session whose configured CA is the one used.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's `verify` on every
    request, so an `otlp_certificate` would be silently replaced by whatever bundle the
    environment names; this session keeps its own (proxies still come from the environment).
    """
    import requests

    class PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> Any:
            merged = super().merge_environment_settings(*args, **kwargs)
            merged["verify"] = self.verify
            return merged

    return PinnedVerifySession()


def otlp_span_exporter(settings: OtlpSettings, reasons: Reasons = no_reason) -> SpanExporter:
    """The OTLP span exporter, watched: a failing export is one clear warning."""
    return WatchedSpanExporter(
        _otlp_exporter(settings, "trace_exporter", "OTLPSpanExporter"), settings, reasons
    )


def otlp_metric_exporter(settings: OtlpSettings, reasons: Reasons = no_reason) -> MetricExporter:
    """The OTLP metric exporter, watched: a failing export is one clear warning."""
    return WatchedMetricExporter(
        _otlp_exporter(settings, "metric_exporter", "OTLPMetricExporter"), settings, reasons
    )


def _grpc_credentials(settings: OtlpSettings) -> Any:
    if settings.certificate is None or settings.endpoint.startswith("http://"):
        return None
    import grpc

    with open(settings.certificate, "rb") as handle:
        return grpc.ssl_channel_credentials(handle.read())


def span_exporters(config: TelemetryConfig, reasons: Reasons = no_reason) -> list[SpanExporter]:
    """The span exporters the config selects (none when telemetry is disabled)."""
    if config.disabled:
        return []
    chosen: list[SpanExporter] = []
    for name in config.exporters_for("traces"):
        if name == "otlp":
            chosen.append(otlp_span_exporter(config.otlp_for("traces"), reasons))
        elif name == "console":
            chosen.append(ConsoleSpanExporter())
    return chosen


def span_processors(config: TelemetryConfig, reasons: Reasons = no_reason) -> list[SpanProcessor]:
    """One bounded BatchSpanProcessor per selected exporter."""
    timeout_ms = int(config.otlp_for("traces").timeout_s * 1000)
    return [
        BatchSpanProcessor(
            exporter, max_queue_size=SPAN_QUEUE_SIZE, export_timeout_millis=timeout_ms
        )
        for exporter in span_exporters(config, reasons)
    ]


def span_processors_from_env() -> list[SpanProcessor]:
    """Span processors for the standard OTEL_* environment (used by the demo)."""
    return span_processors(TelemetryConfig.from_settings())


def build_tracer_provider(
    config: TelemetryConfig, resource: Resource, reasons: Reasons = no_reason
) -> TracerProvider:
    # No SDK atexit hook: ours ends the runs first and bounds the time. When shutdown() gives
    # up on a hanging collector, the SDK's would shut the provider down again at exit (a
    # WARNING after a clean job) and keep it and its queued spans alive until then.
    provider = TracerProvider(
        resource=resource, sampler=build_sampler(config), shutdown_on_exit=False
    )
    for processor in span_processors(config, reasons):
        provider.add_span_processor(processor)
    return provider


class PrometheusEndpoint:
    """A Prometheus reader on its own registry, served over HTTP and pushed from.

    Its own CollectorRegistry keeps process/gc collectors and other libraries' metrics out of
    our exposition, and lets the Pushgateway pusher push exactly the same numbers.
    """

    def __init__(self, process_metrics: bool = False) -> None:
        self.registry = SerialRegistry(auto_describe=True)  # scrape and push: #5258
        if process_metrics:  # opt-in: most scrapers already get these from the node
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.reader = PortablePrometheusReader(
            disable_target_info=True, scope_info_enabled=False, registry=self.registry
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0 = any free port); returns the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        return int(server.server_address[1])

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving (frees the port); the reader is shut down with its MeterProvider.

        `shutdown()` waits for the serving loop to wake from its 0.5 s poll; a connection
        wakes it at once, so stopping costs milliseconds of the shutdown's bounded time.
        """
        server, self._server = self._server, None
        if server is not None:
            stopping = threading.Thread(target=server.shutdown, daemon=True)
            stopping.start()
            host, port = server.server_address[:2]
            local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
            with contextlib.suppress(OSError):  # if not, the poll wakes it within 0.5 s
                socket.create_connection((local, port), timeout=0.2).close()
            stopping.join(timeout=1.0)
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


def metric_readers(
    config: TelemetryConfig,
    prometheus: PrometheusEndpoint | None,
    reasons: Reasons = no_reason,
) -> list[MetricReader]:
    """Readers for the selected metric exporters; `prometheus` supplies the pull reader."""
    if config.disabled:
        return []
    readers: list[MetricReader] = []
    for name in config.exporters_for("metrics"):
        if name == "otlp":
            settings = config.otlp_for("metrics")
            readers.append(
                PeriodicExportingMetricReader(
                    otlp_metric_exporter(settings, reasons),
                    export_interval_millis=config.metric_export_interval,
                    export_timeout_millis=settings.timeout_s * 1000,
                )
            )
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    if prometheus is not None:
        readers.append(prometheus.reader)
    return readers


def build_meter_provider(
    config: TelemetryConfig, resource: Resource, readers: list[MetricReader]
) -> MeterProvider:
    # Exemplars would sample every per-call measurement against the current span: a cost on
    # each LLM call that Prometheus' text format cannot even carry.
    return MeterProvider(
        resource=resource,
        metric_readers=readers,
        views=metric_views(),
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,  # as the TracerProvider: our atexit hook shuts it down
    )
