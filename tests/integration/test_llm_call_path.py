"""Issue "The LLM-call path rebuilt": every call seen through the wrapped client, per-call
numbers produced when a reader collects, active-run gauges from the live runs, and ondine left
exactly as it was when instrumentation is off.

Real ondine runs throughout (the offline demo client, and ondine's own LiteLLM client answered
offline by litellm's `mock_response`), read the way users read them: Prometheus scrapes of our
endpoint and the SDK's in-memory span exporter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ondine import PipelineBuilder
from ondine.orchestration.execution_context import ExecutionContext
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ondine_otel.config import TelemetryConfig
from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews
from ondine_otel.export.exports import bind_metrics
from ondine_otel.export.providers import (
    PrometheusEndpoint,
    build_meter_provider,
)
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.runtime import runtime
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.instruments import metric_views
from ondine_otel.telemetry.metrics import OndineMetrics
from ondine_otel.telemetry.run import RunTelemetry
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

DURATION = "gen_ai_client_operation_duration_seconds"
USAGE = "gen_ai_client_token_usage"


def scrape(port: int) -> list[Sample]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode("utf-8")
    return [s for family in text_string_to_metric_families(body) for s in family.samples]


@dataclass
class Rig:
    """Our Prometheus endpoint on a MeterProvider, the instrumentor on it, spans in memory."""

    endpoint: PrometheusEndpoint
    metrics: OndineMetrics
    spans: InMemorySpanExporter
    port: int

    def finished(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.spans.get_finished_spans())

    def scrape(self) -> list[Sample]:
        return scrape(self.port)


def start_rig(*, path: str = "own", **settings: Any) -> tuple[Rig, Any]:
    """`path`: "own", a MeterProvider ondine-otel built (what `instrument()` sets up); "app",
    an application's MeterProvider (zero-code, an app's own set-up), both bridged to produced
    points; "sdk", the application's provider where the bridge cannot attach (SDK records)."""
    endpoint = PrometheusEndpoint()
    config = TelemetryConfig()
    resource = Resource.create({})
    if path == "own":
        meter_provider = build_meter_provider(config, resource, [endpoint.reader])
    else:
        meter_provider = MeterProvider(metric_readers=[endpoint.reader], views=metric_views())
    metrics = OndineMetrics(runtime.get().registry)
    if path == "sdk":
        metrics.bind(meter_provider, produced=False)
    else:
        bind_metrics(metrics, meter_provider)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    port = endpoint.serve("127.0.0.1", 0)
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, listeners=[metrics], **settings)

    def stop() -> None:
        instrumentor.uninstrument()
        endpoint.close()
        meter_provider.shutdown()
        tracer_provider.shutdown()

    return Rig(endpoint, metrics, spans, port), stop


@pytest.fixture
def produced_rig() -> Iterator[Rig]:
    rig, stop = start_rig(path="own")
    try:
        yield rig
    finally:
        stop()


def chat_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(f"{semconv.SPAN_LLM_OPERATION} ")]


def samples(scraped: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in scraped
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(scraped: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples(scraped, name, **labels))


# --- failed calls are visible -----------------------------------------------------------


def test_failed_calls_are_error_chat_spans_and_error_type_series(
    produced_rig: Rig, tmp_path: Path
) -> None:
    client = OfflineLLMClient(failure_rate=0.3)
    rows = 30
    result = build_demo_pipeline(
        load_reviews(rows), client=client, checkpoint_dir=tmp_path
    ).execute()

    calls = chat_spans(produced_rig.finished())
    failed = [c for c in calls if c.status.status_code is StatusCode.ERROR]
    succeeded = [c for c in calls if c.status.status_code is StatusCode.UNSET]
    assert (
        len(succeeded) == client.success_count == result.metrics.processed_rows - len(result.errors)
    )
    assert failed, "a 30 % failure rate produced no failed call span"
    stage = next(s for s in produced_rig.finished() if s.name.endswith("LLMInvocation"))
    for span in failed:
        attributes = span.attributes or {}
        assert attributes[semconv.ERROR_TYPE] == "SimulatedLLMError"
        assert span.parent is not None and span.parent.span_id == stage.context.span_id
        assert [e.name for e in span.events] == ["exception"]
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time

    scraped = produced_rig.scrape()
    errors = value(scraped, f"{DURATION}_count", error_type="SimulatedLLMError")
    assert errors == len(failed)
    every = value(scraped, f"{DURATION}_count")
    assert every == len(calls)
    # Tokens are counted for the calls that returned, and only for those.
    assert value(scraped, f"{USAGE}_count", gen_ai_token_type="input") == len(succeeded)
    assert value(scraped, f"{USAGE}_sum", gen_ai_token_type="input") == result.costs.input_tokens


def test_failed_litellm_calls_are_visible_too(produced_rig: Rig, tmp_path: Path) -> None:
    """ondine's own LiteLLM client sends no llm_call event for a failed call; we see it."""
    import litellm

    df = pd.DataFrame({"review": ["Great kettle", "Broke in a week"]})
    pipeline = (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=["review"], output_columns=["sentiment"])
        .with_prompt("Classify the sentiment of this review: {review}")
        .with_llm(
            provider="openai",
            model="gpt-4o-mini",
            api_key="sk-test",
            extra_params={
                "mock_response": litellm.RateLimitError(
                    "slow down", llm_provider="openai", model="gpt-4o-mini"
                )
            },
        )
        .with_max_retries(1)
        .with_checkpoint_dir(str(tmp_path))
        .build()
    )
    with pytest.raises(Exception):  # noqa: B017 - ondine's own "no row produced output" error
        pipeline.execute()

    failed = [
        c for c in chat_spans(produced_rig.finished()) if c.status.status_code is StatusCode.ERROR
    ]
    assert len(failed) >= len(df)
    assert {(c.attributes or {})[semconv.GEN_AI_REQUEST_MODEL] for c in failed} == {"gpt-4o-mini"}
    error_types = {(c.attributes or {})[semconv.ERROR_TYPE] for c in failed}
    scraped = produced_rig.scrape()
    for error_type in error_types:
        assert value(scraped, f"{DURATION}_count", error_type=str(error_type)) > 0


# --- the produced path says exactly what the SDK path says -------------------------------


def _run_once(path: str, tmp_path: Path) -> list[Sample]:
    rig, stop = start_rig(path=path, llm_span_rate=0)
    try:
        client = OfflineLLMClient(failure_rate=0.2)
        pipeline = build_demo_pipeline(
            load_reviews(40), client=client, checkpoint_dir=tmp_path / path
        )
        pipeline.execute()
        return rig.scrape()
    finally:
        stop()


_TIMED = ("ondine_run_duration_seconds", "ondine_stage_duration_seconds", DURATION)


def _comparable(scraped: list[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every series with its value, except values that measure time (they differ per run)."""
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in scraped:
        timed = sample.name.startswith(_TIMED) and not sample.name.endswith("_count")
        stamp = sample.name == "ondine_last_success_timestamp_seconds"
        key = (sample.name, tuple(sorted(sample.labels.items())))
        series[key] = float("nan") if timed or stamp else sample.value
    return series


@pytest.mark.parametrize("path", ["app", "sdk"])
def test_every_destination_reports_the_same_series(path: str, tmp_path: Path) -> None:
    """An application's MeterProvider (bridged, or through SDK instruments where the bridge
    cannot attach) reports exactly what ondine-otel's own readers do."""
    own = _comparable(_run_once("own", tmp_path))
    other = _comparable(_run_once(path, tmp_path))
    assert set(other) == set(own)
    differing = {
        key: (own[key], other[key])
        for key in own
        if not (own[key] != own[key] and other[key] != other[key])  # both NaN: timed
        and own[key] != pytest.approx(other[key], rel=1e-12)
    }
    assert not differing
    assert any(name == f"{DURATION}_bucket" for name, _ in own)


# --- active-run gauges from the live runs -----------------------------------------------


def test_active_run_gauges_keep_their_labels_after_2500_runs(produced_rig: Rig) -> None:
    """The SDK keeps every label set of an observable gauge for the life of the process and
    stops at 2,000 per metric; produced gauges exist only while their run does."""
    metrics = produced_rig.metrics
    tracer = TracerProvider().get_tracer("runs")

    def a_run() -> RunTelemetry:
        context = ExecutionContext()
        context.total_rows = 10
        run = RunTelemetry(context, tracer, owner=None, listeners=[metrics])
        metrics.registry.begin(run)
        metrics.run_started(run)
        return run

    for _ in range(2500):
        metrics.registry.end(a_run())
    last = a_run()
    try:
        scraped = produced_rig.scrape()
        gauges = samples(scraped, "ondine_run_rows_expected")
        assert [(s.labels[semconv.LABEL_RUN_ID], s.value) for s in gauges] == [
            (last.session_id, 10.0)
        ]
        assert value(scraped, "ondine_runs_total", status="success") == 2500
    finally:
        metrics.registry.end(last)
    assert samples(produced_rig.scrape(), "ondine_run_rows_expected") == []


def test_budget_and_progress_of_an_active_run_are_scraped_while_it_runs(
    produced_rig: Rig, tmp_path: Path
) -> None:
    df = load_reviews(40)
    pipeline = (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=["review"], output_columns=["sentiment"])
        .with_prompt("Classify: {review}")
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-offline")
        .with_custom_llm_client(OfflineLLMClient(latency_s=0.02))
        .with_concurrency(2)
        .with_max_budget(5.0)
        .with_checkpoint_dir(str(tmp_path))
        .build()
    )
    seen: list[list[Sample]] = []
    import threading

    worker = threading.Thread(target=pipeline.execute, daemon=True)
    worker.start()

    def mid_run() -> bool:
        scraped = produced_rig.scrape()
        seen.append(scraped)
        return value(scraped, "ondine_run_rows_done") > 0

    wait_until(mid_run, timeout=30, message="no active-run gauges during the run")
    worker.join(timeout=60)
    assert not worker.is_alive()
    scraped = seen[-1]
    (budget,) = samples(scraped, "ondine_run_budget_usd")
    assert budget.value == 5.0 and budget.labels[semconv.LABEL_PIPELINE] == "ondine"
    (ratio,) = samples(scraped, "ondine_run_progress_ratio")
    assert ratio.labels[semconv.LABEL_RUN_ID] == budget.labels[semconv.LABEL_RUN_ID]
    assert 0 < ratio.value < 1
    assert samples(produced_rig.scrape(), "ondine_run_budget_usd") == []


# --- nothing is patched unless an entry is on (or named: with_observer) ------------------

_STATE_PROBE = """
import json, logging, os, sys, warnings
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import ondine
from ondine.api.pipeline import Pipeline
from ondine.api.pipeline_builder import PipelineBuilder
from ondine.api.pipeline_composer import PipelineComposer
from ondine.observability.registry import ObserverRegistry
from ondine.orchestration.state_manager import StateManager

def state():
    return {
        "functions": {
            **{name: id(vars(Pipeline)[name]) for name in (
                "execute", "_execute_stages", "execute_async", "execute_stream",
                "execute_stream_async", "execute_stream_pipelined", "_process_chunk_async")},
            "compose": id(vars(PipelineComposer)["execute"]),
            "with_observer": id(vars(PipelineBuilder)["with_observer"]),
            "save_checkpoint": id(vars(StateManager)["save_checkpoint"]),
            "load_checkpoint": id(vars(StateManager)["load_checkpoint"]),
        },
        "root_handlers": [id(h) for h in logging.getLogger().handlers],
        "root_level": logging.getLogger().level,
        "warning_filters": len(warnings.filters),
        "observers": sorted(ObserverRegistry.list_observers()),
    }

def report(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""


def _probe(body: str) -> dict[str, Any]:
    script = _STATE_PROBE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout[-2000:], done.stderr[-4000:])
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def test_import_changes_nothing_but_the_observer_registry_and_with_observer() -> None:
    result = _probe(
        """
        before = state()
        import ondine_otel
        after = state()
        inner = id(vars(PipelineBuilder)["with_observer"].__wrapped__)
        report(before=before, after=after, inner=inner)
        """
    )
    before, after = result["before"], result["after"]
    assert after["observers"] == sorted([*before["observers"], semconv.OBSERVER_NAME])
    # The builder's with_observer is wrapped (naming "otel" applies the runtime's wrappers
    # before the pipeline's first call) around ondine's own; nothing else changes.
    wrapped = after["functions"].pop("with_observer")
    ondines = before["functions"].pop("with_observer")
    assert wrapped != ondines and result["inner"] == ondines
    for key in ("functions", "root_handlers", "root_level", "warning_filters"):
        assert after[key] == before[key], key


def test_uninstrument_gives_ondine_its_own_function_objects_back() -> None:
    result = _probe(
        """
        import tempfile
        import ondine_otel
        from ondine_otel.demo import build_demo_pipeline, load_reviews
        before = state()["functions"]
        instrumentor = ondine_otel.OndineInstrumentor()
        instrumentor.instrument()
        during = state()["functions"]
        build_demo_pipeline(load_reviews(3), checkpoint_dir=tempfile.mkdtemp()).execute()
        instrumentor.uninstrument()
        after_instrumentor = state()["functions"]
        handle = ondine_otel.instrument(traces_exporter="none", metrics_exporter="none")
        build_demo_pipeline(load_reviews(3), checkpoint_dir=tempfile.mkdtemp()).execute()
        handle.shutdown()
        after_handle = state()["functions"]
        report(before=before, during=during, after_instrumentor=after_instrumentor,
               after_handle=after_handle)
        """
    )
    before = result["before"]
    assert result["during"]["execute"] != before["execute"]
    assert result["during"]["save_checkpoint"] != before["save_checkpoint"]
    assert result["during"]["execute_stream_async"] != before["execute_stream_async"]
    assert result["during"]["compose"] != before["compose"]
    assert result["after_instrumentor"] == before
    assert result["after_handle"] == before


def test_a_client_shared_by_runs_is_unwrapped_after_them(produced_rig: Rig, tmp_path: Path) -> None:
    client = OfflineLLMClient()
    for index in range(2):
        build_demo_pipeline(
            load_reviews(4), client=client, checkpoint_dir=tmp_path / str(index)
        ).execute()
    assert "ainvoke" not in vars(client) and "structured_invoke_async" not in vars(client)
    assert len(chat_spans(produced_rig.finished())) == 8
    assert value(produced_rig.scrape(), f"{DURATION}_count") == 8


def test_a_clients_own_call_method_is_recorded_and_put_back(
    produced_rig: Rig, tmp_path: Path
) -> None:
    """A method the instance holds itself (a user's per-instance override) is what gets
    wrapped, and what the instance holds again afterwards; a method from the class leaves
    nothing on the instance (the wrapper learns which without reading the instance's
    `__dict__`, which would slow every attribute read of the client for good)."""
    client = OfflineLLMClient()
    own_calls: list[str] = []
    through_class = client.ainvoke

    async def own(prompt: str, **kwargs: Any) -> Any:
        own_calls.append(prompt)
        return await through_class(prompt, **kwargs)

    client.ainvoke = own  # type: ignore[method-assign]
    build_demo_pipeline(load_reviews(3), client=client, checkpoint_dir=tmp_path).execute()
    assert len(own_calls) == 3
    assert vars(client)["ainvoke"] is own
    assert "structured_invoke_async" not in vars(client)
    assert len(chat_spans(produced_rig.finished())) == 3


# --- the chat span policy ---------------------------------------------------------------


def test_span_policy_keeps_the_first_calls_and_the_failures_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    rig, stop = start_rig(produced=True, llm_span_limit=5, llm_error_span_limit=3, llm_span_rate=0)
    try:
        client = OfflineLLMClient(failure_rate=0.3)
        rows = 60
        build_demo_pipeline(
            load_reviews(rows), client=client, checkpoint_dir=tmp_path, concurrency=1
        ).execute()
        spans = rig.finished()
    finally:
        stop()
    calls = chat_spans(spans)
    failures_total = rows - client.success_count  # one call per row, no retries here
    failed = [c for c in calls if c.status.status_code is StatusCode.ERROR]
    first = sorted(calls, key=lambda c: c.start_time or 0)[:5]
    # The first five calls, whatever their outcome, then failures only, up to three more.
    later_failed = [c for c in failed if c not in first]
    assert len(calls) == 5 + len(later_failed)
    assert len(later_failed) == min(3, failures_total - (len(failed) - len(later_failed)))
    run = next(s for s in spans if s.name == semconv.SPAN_RUN)
    assert (run.attributes or {})[semconv.ATTR_LLM_SPANS_DROPPED] == rows - len(calls)
