"""What is measured against the bare run: ours in several set-ups, ondine's own observer, peers.

Every variant is set up before and torn down after the timed ``execute()``; the tear-down is
timed too (for ours that is ``Telemetry.shutdown()``). Each exports to the same in-process
OTLP sink (or, for the failure variants, to a refused, hanging or 503/UNAVAILABLE endpoint),
with the SDK's default batch span processor, so the tools differ only in what they do per run
and per call. The entries on the application's own providers are set up in `entries`.

Global state: ondine's built-in ``opentelemetry`` observer takes its tracer from the global
tracer provider, which can be set only once per process. A switch is installed as the global
provider before anything else runs; it forwards to the provider of the variant running now
(none otherwise), so ours, which builds its own providers, is not affected. The litellm peers
patch ``litellm`` module-wide: they are applied right before their run and removed right
after, and the harness checks that ``litellm`` holds its own functions again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import ondine_otel
from benchmarks import entries
from benchmarks.endpoints import refused_endpoint
from benchmarks.peer import RemoteHanging, RemoteScraper, RemoteSink, RemoteUnavailable
from benchmarks.session import (
    METRIC_EXPORT_INTERVAL_MS,
    NO_CHAT_SPANS,
    SCRAPE_INTERVAL_S,
    SERVICE_NAME,
    Session,
    Variant,
    default_shutdown_timeout,
)

__all__ = ["ALL", "BY_NAME", "Session", "Variant", "install_tracer_switch", "session"]

#: How long counting a run's kept blocks waits for its exporters' last batch.
FLUSH_TIMEOUT_MS = 2_000

BARE = Variant("bare", "bare", "no instrumentation")
BARE_2 = Variant("bare_2", "bare", "no instrumentation again, in the same rounds: the noise")
OURS = Variant(
    "ours",
    "ours",
    "ondine_otel.instrument(): traces + metrics, Prometheus endpoint scraped over HTTP every "
    f"{SCRAPE_INTERVAL_S} s, OTLP traces and metrics to the live sink, default chat-span policy",
)
OURS_NO_CHAT = Variant(
    "ours_no_chat_spans",
    "ours",
    "as ours, with chat spans off (llm_span_limit=0, llm_span_rate=0, llm_error_span_limit=0)",
    settings=NO_CHAT_SPANS,
)
OURS_REFUSED = Variant(
    "ours_otlp_refused",
    "ours",
    "as ours, the OTLP endpoint refusing connections (nothing listening)",
    otlp="refused",
    shutdown_timeout=2.0,
)
OURS_HANGING = Variant(
    "ours_otlp_hanging",
    "ours",
    "as ours, the OTLP endpoint accepting connections and never answering",
    otlp="hanging",
    shutdown_timeout=2.0,
)
ONDINE_BUILTIN = Variant(
    "ondine_builtin",
    "ondine_builtin",
    "ondine's with_observer('opentelemetry'): global SDK TracerProvider, batch span "
    "processor, OTLP/HTTP span exporter to the sink (a span per LLM call; no metrics)",
)
OPENINFERENCE = Variant(
    "openinference",
    "openinference",
    "openinference-instrumentation-litellm: SDK TracerProvider, batch span processor, OTLP "
    "to the sink (a span per litellm call; no run/stage spans, no metrics)",
)
OPENLLMETRY = Variant(
    "openllmetry",
    "openllmetry",
    "opentelemetry-instrumentation-litellm: SDK TracerProvider + MeterProvider, OTLP traces "
    "and metrics (15 s) to the sink (a span and histograms per litellm call; no run/stage "
    "spans, no cost metric)",
)
APP_METER = Variant(
    "app_meter",
    "app_meter",
    "the application installs a global MeterProvider(metric_readers=[PrometheusMetricReader()]) "
    "on its own registry (served, scraped every "
    f"{SCRAPE_INTERVAL_S} s) and a global TracerProvider (batch processor, in-memory "
    "exporter), then OndineInstrumentor().instrument()",
)
OTEL_OBSERVER = Variant(
    "otel_observer",
    "otel_observer",
    "the application's global providers as app_meter; pipeline.add_observer(OtelObserver())",
)
ZERO_CODE = Variant(
    "zero_code",
    "zero_code",
    "opentelemetry-instrument with opentelemetry-distro, in-process: OTEL_* set (OTLP/HTTP to "
    "the sink, logs off), then the auto-instrumentation initialize(): distro, SDK "
    "configurator, instrumentor entry points",
)


def _dead(otlp: str, protocol: str, what: str) -> Variant:
    """ours with a dead collector, every timeout at its default (what a user gets)."""
    return Variant(
        f"dead_{'http' if protocol == 'http/protobuf' else 'grpc'}_{otlp}",
        "ours",
        f"as ours over OTLP {protocol}, the collector {what}; default OTLP and shutdown timeouts",
        settings={"otlp_protocol": protocol},
        otlp=otlp,
    )


DEAD = tuple(
    _dead(otlp, protocol, what)
    for protocol in ("http/protobuf", "grpc")
    for otlp, what in (
        ("refused", "refusing connections"),
        ("hanging", "accepting connections and never answering"),
        ("unavailable", "answering every export with 503 (gRPC: UNAVAILABLE)"),
    )
)
ALL = (
    BARE,
    BARE_2,
    OURS,
    OURS_NO_CHAT,
    OURS_REFUSED,
    OURS_HANGING,
    ONDINE_BUILTIN,
    OPENINFERENCE,
    OPENLLMETRY,
    APP_METER,
    OTEL_OBSERVER,
    ZERO_CODE,
    *DEAD,
)
BY_NAME = {v.name: v for v in ALL}


class _SwitchedTracerProvider(trace.TracerProvider):
    """The global tracer provider: forwards to the current variant's provider, if any."""

    def __init__(self) -> None:
        self.current: trace.TracerProvider = trace.NoOpTracerProvider()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.current.get_tracer(*args, **kwargs)


_SWITCH = _SwitchedTracerProvider()


def install_tracer_switch() -> None:
    """Make the switch the global tracer provider; must run before any variant."""
    if trace.get_tracer_provider() is _SWITCH:
        return
    trace.set_tracer_provider(_SWITCH)
    if trace.get_tracer_provider() is not _SWITCH:
        raise RuntimeError(
            "a global tracer provider was installed before the benchmark could install its "
            "switch; run the benchmark in a fresh interpreter"
        )


@contextmanager
def session(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    """Set the variant up, yield it, and tear it down (timed) when the run is over."""
    install_tracer_switch()
    opener = _OPENERS[variant.kind]
    with opener(variant, sink) as active:
        yield active


@contextmanager
def _bare(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    yield Session()


@contextmanager
def _ours(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    hanging = RemoteHanging() if variant.otlp == "hanging" else None
    unavailable: RemoteUnavailable | RemoteSink | None = None
    if variant.otlp == "unavailable":
        grpc = variant.settings.get("otlp_protocol") == "grpc"
        unavailable = RemoteUnavailable() if grpc else RemoteSink(status=503)
    try:
        if hanging is not None:
            target = hanging.endpoint
        elif unavailable is not None:
            target = unavailable.endpoint
        elif variant.otlp == "refused":
            target = refused_endpoint()
        else:
            target = sink.endpoint
        telemetry = ondine_otel.instrument(
            otlp_endpoint=target,
            prometheus_host="127.0.0.1",
            prometheus_port=0,
            service_name=SERVICE_NAME,
            pipeline_name="bench",
            **variant.settings,
        )
        yield from _ours_session(variant, telemetry, hanging, unavailable)
    finally:
        if hanging is not None:
            hanging.close()
        if unavailable is not None:
            unavailable.close()


def _requests(endpoint: RemoteUnavailable | RemoteSink) -> int:
    """Exports a 503/UNAVAILABLE collector answered."""
    if isinstance(endpoint, RemoteUnavailable):
        return endpoint.requests
    return sum(requests for requests, _ in endpoint.totals().values())


def _ours_session(
    variant: Variant,
    telemetry: ondine_otel.Telemetry,
    hanging: RemoteHanging | None,
    unavailable: RemoteUnavailable | RemoteSink | None,
) -> Iterator[Session]:
    """Yield the session; afterwards stop the scraper and time `shutdown()`."""
    port = telemetry.prometheus_port
    active = Session(prometheus_port=port, flush=lambda: _flush(telemetry))
    try:
        if port is None:
            raise RuntimeError("instrument() did not serve the Prometheus endpoint")
        active.scraper = RemoteScraper(port, SCRAPE_INTERVAL_S)
        yield active
    finally:
        if active.scraper is not None:
            active.scraper.stop()
        timeout = variant.shutdown_timeout
        active.shutdown_timeout = default_shutdown_timeout() if timeout is None else timeout
        started = time.perf_counter()
        if timeout is None:
            telemetry.shutdown()
        else:
            telemetry.shutdown(timeout=timeout)
        active.teardown_s = time.perf_counter() - started
        if hanging is not None:
            active.hanging_connections = hanging.connections
        if unavailable is not None:
            active.evidence = {"requests": _requests(unavailable)}


def _flush(telemetry: ondine_otel.Telemetry) -> None:
    """Export what the providers hold (bounded: a dead collector must not stall the bench)."""
    for provider in (telemetry.tracer_provider, *telemetry.meter_providers):
        force_flush = getattr(provider, "force_flush", None)  # the SDK's, not the API's
        if force_flush is not None:
            force_flush(FLUSH_TIMEOUT_MS)


def _span_provider(sink: RemoteSink) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME}), shutdown_on_exit=False
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink.endpoint}/v1/traces"))
    )
    return provider


@contextmanager
def _ondine_builtin(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    provider = _span_provider(sink)
    _SWITCH.current = provider
    # No config: its "endpoint"/"service_name" keys would write OTEL_* into os.environ.
    active = Session(steps=[lambda builder: builder.with_observer("opentelemetry", {})])
    try:
        yield active
    finally:
        _SWITCH.current = trace.NoOpTracerProvider()
        started = time.perf_counter()
        provider.shutdown()
        active.teardown_s = time.perf_counter() - started


def _litellm_functions() -> tuple[Callable[..., Any], ...]:
    import litellm

    return (litellm.completion, litellm.acompletion)


@contextmanager
def _litellm_peer(variant: Variant, sink: RemoteSink) -> Iterator[Session]:
    tracer_provider = _span_provider(sink)
    meter_provider: MeterProvider | None = None
    instrumentor: Any
    if variant.kind == "openinference":
        from openinference.instrumentation.litellm import LiteLLMInstrumentor

        instrumentor = LiteLLMInstrumentor()
        kwargs: dict[str, Any] = {"tracer_provider": tracer_provider}
    else:
        from opentelemetry.instrumentation.litellm import LiteLLMInstrumentor as Traceloop

        meter_provider = MeterProvider(
            metric_readers=[
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=f"{sink.endpoint}/v1/metrics"),
                    export_interval_millis=METRIC_EXPORT_INTERVAL_MS,
                )
            ],
            resource=Resource.create({"service.name": SERVICE_NAME}),
            shutdown_on_exit=False,
        )
        instrumentor = Traceloop()
        kwargs = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    originals = _litellm_functions()
    instrumentor.instrument(**kwargs)
    if any(now is before for now, before in zip(_litellm_functions(), originals, strict=True)):
        instrumentor.uninstrument()
        raise RuntimeError(f"{variant.name}: instrument() did not patch litellm")
    active = Session()
    try:
        yield active
    finally:
        instrumentor.uninstrument()
        restored = all(
            now is before for now, before in zip(_litellm_functions(), originals, strict=True)
        )
        active.uninstrumented_cleanly = restored
        started = time.perf_counter()
        tracer_provider.shutdown()
        if meter_provider is not None:
            meter_provider.shutdown()
        active.teardown_s = time.perf_counter() - started
        if not restored:
            raise RuntimeError(
                f"{variant.name}: uninstrument() left litellm patched; the runs after it "
                "would not be bare"
            )


_OPENERS: dict[str, Callable[[Variant, RemoteSink], Any]] = {
    "bare": _bare,
    "ours": _ours,
    "ondine_builtin": _ondine_builtin,
    "openinference": _litellm_peer,
    "openllmetry": _litellm_peer,
    "app_meter": entries.app_meter,
    "otel_observer": entries.otel_observer,
    "zero_code": entries.zero_code,
}
