"""Issue "Metered runs": live counters, exact totals and capped labels (contract section 3).

Every test runs real ondine `Pipeline.execute()` with the offline LLM client and reads the
metrics the way users do: HTTP scrapes of our Prometheus endpoint (from a background thread,
during the run), a real Prometheus server's query API, or an InMemoryMetricReader.
"""

from __future__ import annotations

import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ondine_otel import OtelObserver
from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews
from ondine_otel.export.providers import PrometheusEndpoint
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.instruments import metric_views
from tests.spy import ContextSpy
from tests.support.services import Service, sample_values, wait_for_query
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

COST = "ondine_cost_usd_total"
TOKENS = "ondine_tokens_total"
ROWS = "ondine_rows_processed_total"
RUNS = "ondine_runs_total"
RATIO = "ondine_run_progress_ratio"
RUNS_ACTIVE = "ondine_runs_active"
ROWS_EXPECTED = "ondine_run_rows_expected"


# --- helpers -------------------------------------------------------------------------------


def parse(body: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(body) for s in family.samples]


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse(response.read().decode("utf-8"))


def matching(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(s.value for s in matching(samples, name, **labels))


def with_run_id(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if semconv.LABEL_RUN_ID in s.labels]


def strictly_increasing_distinct(values: list[float]) -> list[float]:
    """The distinct values in scrape order, asserting the series never went down."""
    assert values == sorted(values), f"series went down: {values}"
    distinct: list[float] = []
    for value in values:
        if not distinct or value > distinct[-1]:
            distinct.append(value)
    return distinct


@dataclass
class Scraper:
    """GETs /metrics every `interval` seconds on a background thread until stopped."""

    url: str
    interval: float = 0.05
    scrapes: list[list[Sample]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrapes.append(scrape(self.url))
            except Exception as error:  # noqa: BLE001 - reported by the test
                self.errors.append(error)
            self._stop.wait(self.interval)

    def __enter__(self) -> Scraper:
        self._thread = threading.Thread(target=self._loop, name="test-scraper", daemon=True)
        self._thread.start()
        wait_until(lambda: self.scrapes or self.errors, timeout=10, message="no first scrape")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "scraper thread did not stop"


@dataclass
class PromRig:
    """Our Prometheus endpoint on a MeterProvider of its own, with the instrumentor on it."""

    endpoint: PrometheusEndpoint
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"


@pytest.fixture
def prom_rig() -> Iterator[PromRig]:
    endpoint = PrometheusEndpoint()
    meter_provider = MeterProvider(metric_readers=[endpoint.reader], views=metric_views())
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    port = endpoint.serve("127.0.0.1", 0)
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield PromRig(endpoint, meter_provider, tracer_provider, spans, port)
    finally:
        instrumentor.uninstrument()
        endpoint.close()
        meter_provider.shutdown()
        tracer_provider.shutdown()


@dataclass
class MemoryRig:
    reader: InMemoryMetricReader
    meter_provider: MeterProvider
    tracer_provider: TracerProvider
    spans: InMemorySpanExporter

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value) of every point of the sum/gauge instrument `name`."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            (dict(point.attributes or {}), float(point.value))
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
            if isinstance(point, NumberDataPoint)
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            v for attrs, v in self.points(name) if all(attrs.get(k) == x for k, x in labels.items())
        )


@pytest.fixture
def memory_rig() -> Iterator[MemoryRig]:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], views=metric_views())
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        yield MemoryRig(reader, meter_provider, tracer_provider, spans)
    finally:
        meter_provider.shutdown()
        tracer_provider.shutdown()


@pytest.fixture
def instrumented_memory(memory_rig: MemoryRig) -> Iterator[MemoryRig]:
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(
        tracer_provider=memory_rig.tracer_provider, meter_provider=memory_rig.meter_provider
    )
    try:
        yield memory_rig
    finally:
        instrumentor.uninstrument()


def attr(span: ReadableSpan, key: str) -> Any:
    """A span attribute that must be there."""
    attributes = span.attributes or {}
    assert key in attributes, (span.name, key, dict(attributes))
    return attributes[key]


def number(span: ReadableSpan, key: str) -> float:
    value = attr(span, key)
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
    return float(value)


def chat_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(f"{semconv.SPAN_LLM_OPERATION} ")]


def run_span(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    found = [s for s in spans if s.name == semconv.SPAN_RUN]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


# --- 1. live scrapes during a run, exact totals after it ----------------------------------


def test_scrapes_during_a_run_grow_and_totals_after_it_are_exact(
    prom_rig: PromRig, tmp_path: Path
) -> None:
    pipeline = build_demo_pipeline(
        load_reviews(200),
        client=OfflineLLMClient(latency_s=0.01),
        concurrency=1,
        checkpoint_dir=tmp_path,
    )
    spy = ContextSpy()
    pipeline.add_observer(spy)

    with Scraper(prom_rig.url, interval=0.05) as scraper:
        result = pipeline.execute()
    assert not scraper.errors, scraper.errors
    context = spy.context
    session_id = str(context.session_id)

    # Scrapes taken while the run was active are the ones with a run_id series.
    live = [s for s in scraper.scrapes if matching(s, RATIO, run_id=session_id)]
    assert len(live) >= 3, f"only {len(live)} of {len(scraper.scrapes)} scrapes saw the run"
    rows = [total(s, ROWS) for s in live]
    cost = [total(s, COST) for s in live]
    ratio = [total(s, RATIO, run_id=session_id) for s in live]
    print(f"live scrapes: rows={rows}\ncost={cost}\nratio={ratio}")
    for series in (rows, cost, ratio):
        assert len(strictly_increasing_distinct(series)) >= 3, series
    mid_run = [r for r in ratio if 0.0 < r < 1.0]
    assert len(mid_run) >= 3, ratio
    assert all(0.0 <= r <= 1.0 for r in ratio), ratio
    assert all(total(s, ROWS_EXPECTED, run_id=session_id) == 200 for s in live)
    assert all(total(s, RUNS_ACTIVE) == 1 for s in live)
    # Counters are monotonic over the whole scrape history, before, during and after the run.
    for name in (ROWS, COST, TOKENS):
        strictly_increasing_distinct([total(s, name) for s in scraper.scrapes])
    for token_type in ("input", "output"):  # each series on its own, not only their sum
        strictly_increasing_distinct([total(s, TOKENS, type=token_type) for s in scraper.scrapes])

    final = scrape(prom_rig.url)
    assert with_run_id(final) == []
    assert total(final, RUNS, status="success") == 1
    assert total(final, RUNS, status="error") == 0  # born at 0: increase() sees a 1st failure
    assert total(final, RUNS_ACTIVE) == 0

    assert total(final, COST) == pytest.approx(float(result.costs.total_cost), rel=1e-9)
    assert total(final, COST) == pytest.approx(float(context.accumulated_cost), rel=1e-9)
    assert total(final, COST, pipeline="ondine", model="gpt-4o-mini", provider="openai") == (
        pytest.approx(float(context.accumulated_cost), rel=1e-9)
    )
    assert total(final, TOKENS) == context.accumulated_tokens
    assert total(final, TOKENS, type="input") == context.run_progress.input_tokens
    assert total(final, TOKENS, type="output") == context.run_progress.output_tokens
    assert total(final, ROWS) == 200 == context.last_processed_row + 1
    # The last live scrape is never ahead of the final totals.
    assert cost[-1] <= total(final, COST)


# --- 2. a real Prometheus server reads the same totals -----------------------------------


def test_real_prometheus_scrapes_the_same_totals_as_the_run_context(
    prom_rig: PromRig, prometheus_factory: Callable[..., Service], tmp_path: Path
) -> None:
    prometheus = prometheus_factory([prom_rig.address], scrape_interval="1s")
    pipeline = build_demo_pipeline(load_reviews(40), concurrency=4, checkpoint_dir=tmp_path)
    spy = ContextSpy()
    pipeline.add_observer(spy)
    result = pipeline.execute()
    context = spy.context
    expected_cost = float(context.accumulated_cost)
    expected_tokens = float(context.accumulated_tokens)
    assert expected_cost == pytest.approx(float(result.costs.total_cost), rel=1e-9)
    assert expected_cost > 0 and expected_tokens > 0

    def equals(expected: float) -> Callable[[list[dict[str, Any]]], bool]:
        def check(result: list[dict[str, Any]]) -> bool:
            values = sample_values(result)
            return len(values) == 1 and values[0] == pytest.approx(expected, rel=1e-9)

        return check

    cost = wait_for_query(
        prometheus, "sum(ondine_cost_usd_total)", equals(expected_cost), timeout=45
    )
    tokens = wait_for_query(
        prometheus, "sum(ondine_tokens_total)", equals(expected_tokens), timeout=15
    )
    by_type = wait_for_query(prometheus, "sum by (type) (ondine_tokens_total)", timeout=15)
    split = {s["metric"]["type"]: float(s["value"][1]) for s in by_type}
    print(f"prometheus: cost={sample_values(cost)} tokens={sample_values(tokens)} {split}")
    print(f"context: cost={expected_cost} tokens={expected_tokens}")
    assert split == {
        "input": context.run_progress.input_tokens,
        "output": context.run_progress.output_tokens,
    }
    runs = wait_for_query(prometheus, 'sum(ondine_runs_total{status="success"})', timeout=15)
    assert sample_values(runs) == [1.0]


# --- 6. crash, then resume: the restored part is not counted twice ----------------------


@dataclass
class CrashAndResume:
    crashing: OfflineLLMClient
    good: OfflineLLMClient
    crashed_spans: tuple[ReadableSpan, ...]
    resumed_spans: tuple[ReadableSpan, ...]
    cost_after_crash: float
    context: Any
    result: Any
    rows: int


def crash_and_resume(rig: MemoryRig, checkpoint_dir: Path) -> CrashAndResume:
    """Run 1 crashes after 10 calls (fail policy); run 2 resumes its session with a good client."""
    df = load_reviews(30)
    crashing = OfflineLLMClient(crash_after=10)
    first = build_demo_pipeline(
        df, client=crashing, error_policy="fail", concurrency=1, checkpoint_dir=checkpoint_dir
    )
    with pytest.raises(Exception):  # noqa: B017 - ondine's own error type is not our contract
        first.execute()
    crashed_spans = tuple(rig.spans.get_finished_spans())
    session_id = uuid.UUID(str(attr(run_span(crashed_spans), semconv.ATTR_SESSION_ID)))
    cost_after_crash = rig.value("ondine.cost.usd")
    rig.spans.clear()

    good = OfflineLLMClient()
    second = build_demo_pipeline(df, client=good, concurrency=1, checkpoint_dir=checkpoint_dir)
    spy = ContextSpy()
    second.add_observer(spy)
    result = second.execute(resume_from=session_id)
    resumed_spans = tuple(rig.spans.get_finished_spans())
    assert attr(run_span(resumed_spans), semconv.ATTR_RESUMED) is True
    return CrashAndResume(
        crashing,
        good,
        crashed_spans,
        resumed_spans,
        cost_after_crash,
        spy.context,
        result,
        len(df),
    )


def test_resumed_run_does_not_count_the_restored_cost_twice(
    instrumented_memory: MemoryRig, tmp_path: Path
) -> None:
    rig = instrumented_memory
    runs = crash_and_resume(rig, tmp_path)
    assert runs.cost_after_crash > 0

    every_call = chat_spans(runs.crashed_spans) + chat_spans(runs.resumed_spans)
    failed = [c for c in every_call if c.status.status_code is StatusCode.ERROR]
    calls = [c for c in every_call if c.status.status_code is not StatusCode.ERROR]
    # Every call has its span: those that returned (and were billed), and the crashing one.
    assert len(calls) == runs.crashing.success_count + runs.good.success_count
    assert len(failed) == 1
    assert (failed[0].attributes or {})[semconv.ERROR_TYPE] == "RuntimeError"
    assert runs.good.success_count < runs.rows  # the resumed run really skipped restored rows
    call_cost = sum(number(c, semconv.ATTR_COST_USD) for c in calls)
    call_input = sum(number(c, semconv.GEN_AI_USAGE_INPUT_TOKENS) for c in calls)
    call_output = sum(number(c, semconv.GEN_AI_USAGE_OUTPUT_TOKENS) for c in calls)

    cost = rig.value("ondine.cost.usd")
    print(
        f"crash={runs.cost_after_crash} total={cost} calls={call_cost} ondine={runs.result.costs}"
    )
    assert cost == pytest.approx(call_cost, rel=1e-9)
    assert cost == pytest.approx(float(runs.context.accumulated_cost), rel=1e-9)
    assert rig.value("ondine.tokens", type="input") == call_input
    assert rig.value("ondine.tokens", type="output") == call_output
    assert rig.value("ondine.tokens") == runs.context.accumulated_tokens
    assert rig.value("ondine.rows.processed") == runs.rows
    assert rig.value("ondine.runs", status="error") == 1
    assert rig.value("ondine.runs", status="success") == 1


def test_resumed_run_span_token_split_adds_up_to_its_total(
    instrumented_memory: MemoryRig, tmp_path: Path
) -> None:
    """The resumed run span reports cumulative cost and total tokens; its split must match."""
    runs = crash_and_resume(instrumented_memory, tmp_path)
    span = run_span(runs.resumed_spans)
    split = (number(span, semconv.ATTR_TOKENS_INPUT), number(span, semconv.ATTR_TOKENS_OUTPUT))
    assert number(span, semconv.ATTR_TOKENS_TOTAL) == runs.context.accumulated_tokens
    assert number(span, semconv.ATTR_COST_USD) == pytest.approx(
        float(runs.context.accumulated_cost), rel=1e-9
    )
    # ondine's own final CostEstimate of the resumed run is cumulative too.
    assert split == (runs.result.costs.input_tokens, runs.result.costs.output_tokens)
    assert sum(split) == number(span, semconv.ATTR_TOKENS_TOTAL)


# --- 7. the pipeline label is capped ----------------------------------------------------------


def test_pipeline_label_values_are_capped_at_one_hundred_plus_other(
    memory_rig: MemoryRig, tmp_path: Path
) -> None:
    df = load_reviews(1)
    names = [f"nightly-{index:03d}" for index in range(150)]
    for name in names:
        pipeline = build_demo_pipeline(df, concurrency=1, checkpoint_dir=tmp_path)
        pipeline.add_observer(
            OtelObserver(memory_rig.tracer_provider, memory_rig.meter_provider, pipeline_name=name)
        )
        pipeline.execute()

    runs = memory_rig.points("ondine.runs")
    labels = {attrs[semconv.LABEL_PIPELINE] for attrs, _ in runs}
    assert len(labels) == 101, len(labels)
    assert labels == {*names[:100], semconv.OVERFLOW_LABEL_VALUE}
    assert memory_rig.value("ondine.runs", pipeline=semconv.OVERFLOW_LABEL_VALUE) == 50
    assert sum(value for _, value in runs) == 150
    # The capped label is the same on every metric, so totals still add up.
    rows = {
        attrs[semconv.LABEL_PIPELINE] for attrs, _ in memory_rig.points("ondine.rows.processed")
    }
    assert rows == labels
    assert memory_rig.value("ondine.rows.processed") == 150
    # Run spans still name the real pipeline: only metric labels are capped.
    names_in_spans = {
        attr(s, semconv.ATTR_PIPELINE_NAME)
        for s in memory_rig.spans.get_finished_spans()
        if s.name == semconv.SPAN_RUN
    }
    assert names_in_spans == set(names)
