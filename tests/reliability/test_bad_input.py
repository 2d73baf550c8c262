"""Hostile input from ondine's context and from users' names and texts.

Malformed ids, negative or missing counters, total_rows=0, None or float costs are planted in
the real context of a real run by an observer that runs before ours; the job must not notice
and the telemetry must stay sane (valid ids, finite non-negative counters). Huge prompt texts
with content capture on must be truncated to the configured limit and never cost the trace.
Label values with quotes, backslashes and newlines must survive the Prometheus text format,
read back by prometheus_client's parser and by a real Prometheus.
"""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ondine.orchestration.observers import ExecutionObserver
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from ondine_otel.demo import build_demo_pipeline, load_reviews
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.telemetry import semconv
from tests.reliability import jobs
from tests.reliability.conftest import Figures
from tests.support.otlp_receiver import OtlpGrpcReceiver
from tests.support.services import Service, wait_for_query
from tests.traces import runs

pytestmark = pytest.mark.reliability


class Saboteur(ExecutionObserver):
    """Plants bad values in ondine's real context just before our observer reads it."""

    def __init__(self, hook: str, values: dict[str, Any]) -> None:
        self.hook, self.values = hook, values

    def _plant(self, hook: str, context: Any) -> None:
        if hook == self.hook:
            for name, value in self.values.items():
                setattr(context, name, value)

    def on_pipeline_start(self, pipeline: Any, context: Any) -> None:
        self._plant("start", context)

    def on_stage_start(self, stage: Any, context: Any) -> None:
        self._plant(f"stage {stage.name}", context)

    def on_stage_complete(self, stage: Any, context: Any, result: Any) -> None:
        self._plant(f"stage done {stage.name}", context)

    def on_stage_error(self, stage: Any, context: Any, error: Exception) -> None:
        pass

    def on_pipeline_complete(self, context: Any, result: Any) -> None:
        self._plant("complete", context)

    def on_pipeline_error(self, context: Any, error: Exception) -> None:
        pass


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "malformed ids": ("start", {"trace_id": "not-a-uuid", "span_id": "???"}),
    "empty ids": ("start", {"trace_id": "", "span_id": ""}),
    "negative counters": (
        "complete",
        {"failed_rows": -5, "skipped_rows": -2, "accumulated_tokens": -100,
         "last_processed_row": -7},
    ),
    "missing counters": (
        "complete",
        {"failed_rows": None, "skipped_rows": None, "accumulated_tokens": None,
         "last_processed_row": None, "total_rows": None},
    ),
    "total_rows=0": ("stage done DataLoader", {"total_rows": 0}),
    "None cost": ("complete", {"accumulated_cost": None}),
    "float cost": ("complete", {"accumulated_cost": 0.125}),
}


@pytest.fixture
def metered() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", getattr(point, "sum", None))
                    out.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return out


_COUNTERS = (
    semconv.METRIC_ROWS_PROCESSED,
    semconv.METRIC_ROWS_FAILED,
    semconv.METRIC_ROWS_SKIPPED,
    semconv.METRIC_TOKENS,
    semconv.METRIC_COST,
    semconv.METRIC_RUNS,
)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_context_values_never_reach_the_job_or_the_telemetry(
    case: str,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    metered: tuple[MeterProvider, InMemoryMetricReader],
    tmp_path: Path,
    figures: Figures,
) -> None:
    hook, values = CASES[case]
    meter_provider, reader = metered
    expected = build_demo_pipeline(load_reviews(20), checkpoint_dir=tmp_path / "bare").execute()
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        pipeline = build_demo_pipeline(load_reviews(20), checkpoint_dir=tmp_path / "bad")
        pipeline.add_observer(Saboteur(hook, values))
        result = pipeline.execute()
        points = _points(reader)  # collection reads the (now hostile) contexts too
    finally:
        instrumentor.uninstrument()
    run_spans = runs(span_exporter.get_finished_spans())
    numbers = {
        name: [v for _, v in points.get(name, [])] for name in _COUNTERS
    }
    insane = {
        name: vals
        for name, vals in numbers.items()
        if any(v is None or not math.isfinite(float(v)) or v < 0 for v in vals)
    }
    figures.record(
        f"bad context value: {case}",
        "nothing; the run is traced and counted",
        "job unchanged; valid ids; counters finite and never negative",
        f"{len(run_spans)} run span, {sum(len(v) for v in numbers.values())} counter points, "
        f"{len(insane)} insane",
    )
    assert result.costs.total_cost == expected.costs.total_cost
    assert len(run_spans) == 1
    run = run_spans[0]
    attrs = dict(run.attributes or {})
    assert run.end_time is not None
    assert insane == {}, insane
    assert run.context.trace_id != 0 and run.context.span_id != 0
    numeric = {k: v for k, v in attrs.items() if isinstance(v, (int, float))}
    assert all(math.isfinite(float(v)) for v in numeric.values()), numeric
    if "ids" in case:
        assert attrs[semconv.ATTR_TRACE_ID] == values["trace_id"]
        assert uuid.UUID(int=run.context.trace_id)  # a valid 128-bit id
    if case == "float cost":
        cost = sum(float(v) for v in numbers[semconv.METRIC_COST])
        assert cost == pytest.approx(0.125)
        assert attrs[semconv.ATTR_COST_USD] == pytest.approx(0.125)
    if case == "total_rows=0":
        assert attrs[semconv.ATTR_ROWS_TOTAL] in (0, 20)


_HUGE_CHILD = """
import ondine_otel
handle = ondine_otel.instrument(otlp_endpoint={endpoint!r}, otlp_protocol="grpc",
                                traces_exporter="otlp", metrics_exporter="none",
                                capture_content=True)
df = load_reviews(20)
df["review"] = df["review"] + " " + ("lorem ipsum dolor " * 20000)  # ~360 KB per prompt
result = build_demo_pipeline(df, checkpoint_dir=tempfile.mkdtemp()).execute()
handle.shutdown(timeout=10)
report(rows=len(frame_of(result)["sentiment"]), logs=LOG_RECORDS)
"""


def _longest_value(receiver: OtlpGrpcReceiver) -> int:
    longest = 0
    for span in receiver.spans():
        for attrs in (span.attributes, *(e.attributes for e in span.events)):
            for value in attrs.values():
                if isinstance(value, str):
                    longest = max(longest, len(value))
    return longest


@pytest.mark.parametrize("limit", [None, 4096])
def test_huge_attribute_values_are_truncated_and_never_cost_the_trace(
    limit: int | None, figures: Figures
) -> None:
    env = {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": str(limit)} if limit else {}
    with OtlpGrpcReceiver() as receiver:
        result = jobs.run(_HUGE_CHILD.format(endpoint=receiver.endpoint), env=env, timeout=180)
        run_spans = [s for s in receiver.spans() if s.name == semconv.SPAN_RUN]
        chats = [s for s in receiver.spans() if s.name.startswith("chat ")]
        longest = _longest_value(receiver)
    lost = [r["text"][:160] for r in result["logs"]]
    figures.record(
        "huge prompt texts (~360 KB each) with content capture on, "
        + (f"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT={limit}" if limit else "no limit configured"),
        "captured prompts truncated; the trace arrives",
        "attribute values cut to the configured limit; a huge value never loses the trace",
        f"{len(run_spans)} run span, {len(chats)} chat spans received; longest attribute value "
        f"{longest:,} chars; {len(lost)} exporter log lines",
    )
    assert result["rows"] == 20
    assert len(run_spans) == 1 and len(chats) == 20, lost  # all 20 calls are within the cap
    if limit:
        assert longest <= limit


LABEL_MODEL = 'gpt-4o "mini"\\b\nv2'
LABEL_PIPELINE = 'team "a" \\ nightly'

_LABEL_CHILD = f"""
import ondine_otel
from ondine.core.specifications import LLMSpec
from ondine_otel.demo.client import OfflineLLMClient
handle = ondine_otel.instrument(prometheus_port=0, prometheus_host="127.0.0.1",
                                traces_exporter="none", pipeline_name={LABEL_PIPELINE!r})
client = OfflineLLMClient(LLMSpec(provider="openai", model={LABEL_MODEL!r}))
build_demo_pipeline(load_reviews(5), client=client, model={LABEL_MODEL!r},
                    checkpoint_dir=tempfile.mkdtemp()).execute()
print("PORT", handle.prometheus_port, flush=True)
sys.stdin.readline()  # keep serving until the test has scraped
"""


def _labels_of(text: str, name: str) -> list[dict[str, str]]:
    return [
        s.labels
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_label_values_with_quotes_and_newlines_round_trip_through_prometheus(
    prometheus_factory: Callable[..., Service], figures: Figures
) -> None:
    import urllib.request

    child = subprocess.Popen(
        [sys.executable, "-c", jobs.script(_LABEL_CHILD)],
        env=jobs.child_env(),
        cwd=jobs.REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        port = next(
            int(line.split()[1]) for line in child.stdout if line.startswith("PORT ")
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        parsed = _labels_of(text, "ondine_cost_usd_total")
        prometheus = prometheus_factory([f"127.0.0.1:{port}"], scrape_interval="1s")
        stored = wait_for_query(prometheus, "ondine_cost_usd_total", timeout=30)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
    from_prometheus = [sample["metric"] for sample in stored]
    round_trips = {
        "parser": [(l.get("pipeline"), l.get("model")) for l in parsed],  # noqa: E741
        "prometheus": [(m.get("pipeline"), m.get("model")) for m in from_prometheus],
    }
    wanted = (LABEL_PIPELINE, LABEL_MODEL)
    figures.record(
        "label values with quotes, backslashes and a newline (pipeline, model)",
        "the exact names in PromQL results and Grafana legends",
        "escaped correctly in the text format: prometheus_client's parser and Prometheus "
        "read back the exact values",
        f"parser: {'exact' if wanted in round_trips['parser'] else 'MISMATCH'}; "
        f"Prometheus: {'exact' if wanted in round_trips['prometheus'] else 'MISMATCH'}",
    )
    assert round_trips["parser"] == [wanted], round_trips
    assert round_trips["prometheus"] == [wanted], round_trips
