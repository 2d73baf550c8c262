"""ondine-otel's entries where the application owns the OpenTelemetry set-up.

- ``app_meter``: the application installs its own global ``MeterProvider`` (a
  ``PrometheusMetricReader`` on its own ``CollectorRegistry``, served over HTTP and scraped like
  ours) and ``TracerProvider`` (batch processor into an in-memory exporter), then calls
  ``OndineInstrumentor().instrument()``.
- ``otel_observer``: the same application providers; the pipeline gets ``OtelObserver()``
  through ``Pipeline.add_observer`` (it uses the global providers).
- ``zero_code``: what ``opentelemetry-instrument`` does with opentelemetry-distro, in this
  process: ``OTEL_*`` set, then the auto-instrumentation's ``initialize()`` (the function its
  ``sitecustomize`` calls) runs the distro, its SDK configurator (global tracer, meter and
  logger providers, OTLP/HTTP to the sink) and every ``opentelemetry_instrumentor`` entry point,
  ondine-otel's among them.

Each run starts from no global provider and the previous globals come back after it
(`app_globals`); ondine's functions are checked (and put back) after each tear-down, so the
bare runs that follow are bare.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, start_http_server

from benchmarks import app_globals, ondine_state
from benchmarks.endpoints import scrape
from benchmarks.peer import RemoteScraper, RemoteSink
from benchmarks.session import SCRAPE_INTERVAL_S, SERVICE_NAME, Session, Variant
from ondine_otel import OndineInstrumentor, OtelObserver

# The environment `opentelemetry-instrument` would run the job with. Logs: ondine-otel emits
# none through the logging SDK, so no log exporter. The litellm instrumentations of the
# benchmark's peers are installed too; a user of ondine-otel would not have them.
ZERO_CODE_ENV = {
    "OTEL_SERVICE_NAME": SERVICE_NAME,
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "litellm",
}
_ENV_PREFIXES = ("OTEL_", "ONDINE_OTEL_")


@dataclass
class _AppProviders:
    """An application's own providers: Prometheus on its registry, spans kept in memory."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    port: int
    _server: object

    @classmethod
    def start(cls) -> _AppProviders:
        resource = Resource.create({"service.name": SERVICE_NAME})
        registry = CollectorRegistry()
        meter_provider = MeterProvider(
            metric_readers=[PrometheusMetricReader(registry=registry)],
            resource=resource,
            shutdown_on_exit=False,
        )
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        tracer_provider.add_span_processor(BatchSpanProcessor(spans))
        server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
        return cls(tracer_provider, spans, meter_provider, server.server_address[1], server)

    def install(self) -> None:
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)

    def scraper(self) -> RemoteScraper:
        return RemoteScraper(self.port, SCRAPE_INTERVAL_S)

    def evidence(self) -> dict[str, int]:
        """Series ondine-otel put on the app's registry; spans the app's exporter holds."""
        page = scrape(f"http://127.0.0.1:{self.port}/metrics")
        series = sum(1 for line in page.splitlines() if line.startswith(b"ondine_"))
        return {"series": series}

    def shutdown(self) -> None:
        """What the application's exit does: flush and stop both providers."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def close(self) -> None:
        """Stop serving the registry (the benchmark's part; untimed)."""
        self._server.shutdown()  # type: ignore[attr-defined]
        self._server.server_close()  # type: ignore[attr-defined]


def _tear_down(app: _AppProviders, active: Session, stop_entry: Callable[[], Any]) -> None:
    """Stop scraping, keep the evidence, then time what the application's exit does: the
    entry's own tear-down and both providers' shutdown."""
    _stop(active)
    evidence = app.evidence()
    started = time.perf_counter()
    stop_entry()
    app.shutdown()
    active.teardown_s = time.perf_counter() - started
    app.close()
    active.evidence = {**evidence, "spans": len(app.spans.get_finished_spans())}


def _settle(active: Session, before: ondine_state.Snapshot) -> None:
    """Record what the entry's tear-down left wrapped in ondine, and put it back."""
    active.left_patched = ondine_state.restore(before)
    active.uninstrumented_cleanly = not active.left_patched


@contextmanager
def app_meter(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    before = ondine_state.snapshot()
    app = _AppProviders.start()
    with app_globals.fresh():
        app.install()
        instrumentor = OndineInstrumentor()
        instrumentor.instrument()
        active = Session(scraper=app.scraper())
        try:
            yield active
        finally:
            _tear_down(app, active, instrumentor.uninstrument)
            _settle(active, before)


@contextmanager
def otel_observer(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    before = ondine_state.snapshot()
    app = _AppProviders.start()
    with app_globals.fresh():
        app.install()
        active = Session(scraper=app.scraper(), observers=[OtelObserver()])
        try:
            yield active
        finally:
            _tear_down(app, active, lambda: None)  # OtelObserver has no tear-down of its own
            # OtelObserver has no tear-down of its own; what it leaves wrapped is reported,
            # then removed the public way (the instrumentor's uninstrument()) and checked.
            left = ondine_state.changed(before)
            if left:
                OndineInstrumentor().instrument()
                OndineInstrumentor().uninstrument()
            _settle(active, before)
            active.left_patched = left


@contextmanager
def zero_code(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    from opentelemetry.instrumentation.auto_instrumentation import initialize

    before = ondine_state.snapshot()
    with (
        app_globals.fresh(),
        _environ({**ZERO_CODE_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}),
    ):
        initialize(swallow_exceptions=False)
        tracer_provider = trace.get_tracer_provider()
        meter_provider = metrics.get_meter_provider()
        logger_provider = get_logger_provider()
        if not ondine_state.changed(before) or not isinstance(tracer_provider, TracerProvider):
            raise RuntimeError(
                "the auto-instrumentation did not configure the SDK or instrument ondine"
            )
        active = Session()
        try:
            yield active
        finally:
            started = time.perf_counter()
            OndineInstrumentor().uninstrument()
            tracer_provider.shutdown()
            if isinstance(meter_provider, MeterProvider):
                meter_provider.shutdown()
            if isinstance(logger_provider, LoggerProvider):
                logger_provider.shutdown()
            active.teardown_s = time.perf_counter() - started
            _settle(active, before)


def _stop(active: Session) -> None:
    if active.scraper is not None:
        active.scraper.stop()


@contextmanager
def _environ(settings: dict[str, str]) -> Iterator[None]:
    """`settings` in os.environ inside; every OTEL_*/ONDINE_OTEL_* variable as before after
    (the distro adds its defaults with setdefault)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith(_ENV_PREFIXES)]:
            del os.environ[name]
        os.environ.update(saved)
