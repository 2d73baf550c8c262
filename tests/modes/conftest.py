"""The three public entries as one fixture, and a spy on the ids and totals ondine reports.

`telemetry` is parametrized over `instrument` (OndineInstrumentor on in-memory providers),
`add_observer` (an OtelObserver on the same providers, added to the pipeline the user runs) and
`with_observer` (ondine's named observer "otel", which uses the global providers: each test
installs SDK providers with in-memory readers as the globals, as an application would at its
start, and the previous globals come back after it). Only public names of ondine-otel are
used, so the tests survive a rewrite of its internals.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from ondine.observability.base import PipelineObserver
from ondine.observability.registry import ObserverRegistry
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ondine_otel
from benchmarks import app_globals

ENTRIES = ("instrument", "add_observer", "with_observer")
SPY = "modes-spy"


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset[Any]], float]:
    """Every point's value (a histogram's count) by metric name and attribute set."""
    found: dict[tuple[str, frozenset[Any]], float] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    value = point.count if isinstance(point, HistogramDataPoint) else point.value
                    key = (metric.name, frozenset(dict(point.attributes).items()))
                    found[key] = found.get(key, 0) + float(value)
    return found


@dataclass
class Telemetry:
    """One entry of ondine-otel, set up for a test; `spans()`/`metric()` read what it made."""

    entry: str
    pipeline_name: str
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    baseline: dict[tuple[str, frozenset[Any]], float] = field(default_factory=dict)

    def prepare(self, builder: Any) -> Any:
        """Before build(): the with_observer entry configures ondine's named observer."""
        if self.entry == "with_observer":
            builder = builder.with_observer("otel", {"pipeline_name": self.pipeline_name})
        return builder

    def attach(self, pipeline: Any) -> Any:
        """After build(): the add_observer entry adds an OtelObserver to the user's pipeline."""
        if self.entry == "add_observer":
            pipeline.add_observer(
                ondine_otel.OtelObserver(
                    self.tracer_provider, self.meter_provider, pipeline_name=self.pipeline_name
                )
            )
        return pipeline

    def build(self, builder: Any) -> Any:
        return self.attach(self.prepare(builder).build())

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metric(self, name: str, **labels: str) -> float:
        """What metric `name` (OTel instrument name) gained during the test, summed over the
        points whose attributes include `labels` (histograms: their count)."""
        wanted = set(labels.items())
        total = 0.0
        for (metric_name, attrs), value in _points(self.reader).items():
            if metric_name == name and wanted <= set(attrs):
                total += value - self.baseline.get((metric_name, attrs), 0.0)
        return total


@pytest.fixture(params=ENTRIES)
def telemetry(request: pytest.FixtureRequest) -> Iterator[Telemetry]:
    name = "modes-" + uuid.uuid4().hex[:8]
    if request.param == "with_observer":
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        with app_globals.fresh():
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
            yield Telemetry("with_observer", name, exporter, reader)
        return
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(request.param, name, exporter, reader, tracer_provider, meter_provider)
    instrumentor = ondine_otel.OndineInstrumentor()
    if request.param == "instrument":
        instrumentor.instrument(
            tracer_provider=tracer_provider, meter_provider=meter_provider, pipeline_name=name
        )
    try:
        yield telemetry
    finally:
        if request.param == "instrument":
            instrumentor.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@dataclass
class RunReport:
    """What ondine itself announced for one run (its own ids and totals)."""

    run_id: str
    trace_id: str
    span_id: str
    success: bool | None = None
    rows_processed: int = 0
    rows_failed: int = 0
    rows_skipped: int = 0
    cost: float = 0.0
    tokens: int = 0


class _Spy(PipelineObserver):
    """ondine's own pipeline_start/pipeline_end events, for every run incl. stream chunks
    (ondine copies named observers into each chunk's pipeline)."""

    reports: ClassVar[dict[str, RunReport]] = {}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config or {})

    def on_pipeline_start(self, event: Any) -> None:
        # Dispatched before any legacy observer runs: ondine's ids as ondine made them.
        self.reports[str(event.run_id)] = RunReport(
            str(event.run_id), str(event.trace_id), str(event.span_id)
        )

    def on_llm_call(self, event: Any) -> None:
        pass  # abstract in ondine; calls are counted from spans and metrics

    def on_pipeline_end(self, event: Any) -> None:
        report = self.reports[str(event.run_id)]
        report.success = event.success
        report.rows_processed = event.rows_processed
        report.rows_failed = event.rows_failed
        report.rows_skipped = event.rows_skipped
        report.cost = float(event.total_cost)
        report.tokens = int(event.total_tokens)


@pytest.fixture
def ondine_runs() -> Iterator[dict[str, RunReport]]:
    """Add `.with_observer(SPY, {})` to a builder; this dict then holds ondine's reports."""
    if not ObserverRegistry.is_registered(SPY):
        ObserverRegistry.register(SPY, _Spy)
    _Spy.reports = {}
    yield _Spy.reports
