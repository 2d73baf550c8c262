"""The metrics summary table: grouping by label, throughput, call latency from buckets."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from rich.console import Console

from ondine_otel.cli.console import print_metrics_summary
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.instruments import metric_views


def _render(data: MetricsData | None) -> str:
    console = Console(record=True, width=120, color_system=None)
    print_metrics_summary(data, console)
    return console.export_text()


def _line(text: str, label: str) -> list[str]:
    found = next(line for line in text.splitlines() if line.strip().startswith(label))
    return found.split()


def _recorded() -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=metric_views())
    meter = provider.get_meter("test")
    cost = meter.create_counter(semconv.METRIC_COST)
    cost.add(0.25, {"pipeline": "a", "model": "gpt-4o-mini"})
    cost.add(0.5, {"pipeline": "b", "model": "gpt-4o-mini"})
    cost.add(1.125, {"pipeline": "a", "model": "claude"})
    tokens = meter.create_counter(semconv.METRIC_TOKENS)
    tokens.add(1200, {"model": "claude", "type": "input"})
    tokens.add(800, {"model": "gpt-4o-mini", "type": "input"})
    tokens.add(30, {"model": "claude", "type": "output"})
    meter.create_counter(semconv.METRIC_ROWS_PROCESSED).add(300, {"pipeline": "a"})
    meter.create_counter(semconv.METRIC_ROWS_SKIPPED).add(2, {"pipeline": "a"})
    runs = meter.create_counter(semconv.METRIC_RUNS)
    runs.add(2, {"status": "success"})
    runs.add(1, {"status": "error"})
    durations = meter.create_histogram(semconv.METRIC_RUN_DURATION, "s")
    for seconds in (1.0, 2.0):
        durations.record(seconds, {"status": "success"})
    calls = meter.create_histogram(semconv.METRIC_GENAI_DURATION, "s")
    for seconds in (0.005, 0.03, 0.05, 0.07, 0.3):
        calls.record(seconds, {semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"})
    calls.record(0.2, {semconv.GEN_AI_REQUEST_MODEL: "claude", semconv.ERROR_TYPE: "Timeout"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def test_summary_groups_counters_and_derives_rates() -> None:
    text = _render(_recorded())
    assert "Metrics summary" in text
    assert _line(text, "spend · claude")[3:5] == ["$1.125", "ondine_cost_usd_total"]
    assert _line(text, "spend · gpt-4o-mini")[3] == "$0.75"  # both pipelines
    assert _line(text, "tokens · input")[3] == "2,000"
    assert _line(text, "tokens · output")[3] == "30"
    assert _line(text, "rows processed")[2] == "300"
    assert _line(text, "rows skipped")[2] == "2"
    assert "rows failed" not in text  # not recorded, so not invented
    assert _line(text, "throughput")[1:3] == ["100", "rows/s"]  # 300 rows / 3 s
    assert _line(text, "runs · error")[3] == "1"
    assert _line(text, "runs · success")[3] == "2"
    assert _line(text, "LLM calls")[2:5] == ["6", "(1", "failed)"]
    assert _line(text, "LLM latency mean")[3:5] == ["109", "ms"]  # 0.655 s / 6
    # Sorted calls: 5 ms, 30, 50, 70, 200, 300: the median lies in the (40, 80] ms bucket.
    assert _line(text, "LLM latency p50")[3:6] == ["≤", "80", "ms"]


def test_summary_without_metrics_says_so() -> None:
    assert "no ondine metrics recorded" in _render(None)
