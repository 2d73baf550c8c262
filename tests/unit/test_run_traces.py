"""Issue "Traced runs": one correct trace per real ondine run (contract sections 1 and 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ondine import PipelineBuilder
from ondine.observability.base import PipelineObserver
from ondine.observability.registry import ObserverRegistry
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ondine_otel import OtelObserver
from ondine_otel.demo.client import OfflineLLMClient
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import PROMPT, build_demo_pipeline
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.runtime import runtime
from ondine_otel.telemetry import semconv
from tests.spy import ContextSpy
from tests.traces import event_names, only_run, runs, stage, stages_of


def _client(**kwargs: Any) -> OfflineLLMClient:
    return OfflineLLMClient(**kwargs)


def test_one_run_is_one_trace_with_ondine_ids(
    instrumented: OndineInstrumentor, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    pipeline = build_demo_pipeline(load_reviews(20), checkpoint_dir=tmp_path)
    spy = ContextSpy()
    pipeline.add_observer(spy)
    result = pipeline.execute()
    spans = span_exporter.get_finished_spans()

    assert len({s.context.trace_id for s in spans}) == 1
    run = only_run(spans)
    assert run.parent is None
    assert run.kind is SpanKind.INTERNAL
    assert run.context.trace_id == uuid.UUID(spy.trace_id_at_start).int
    assert run.context.span_id == uuid.UUID(spy.span_id_at_start).int & (2**64 - 1)
    assert run.status.status_code is StatusCode.UNSET  # success: UNSET (semconv)

    stages = stages_of(spans, run)
    assert [s.attributes[semconv.ATTR_STAGE_NAME] for s in stages] == spy.stages
    assert [s.name for s in stages] == [f"ondine.stage {name}" for name in spy.stages]
    assert [s.attributes[semconv.ATTR_STAGE_INDEX] for s in stages] == list(range(len(stages)))
    assert {"DataLoader", "PromptFormatter", "LLMInvocation", "ResponseParser"} <= set(spy.stages)
    starts = [s.start_time for s in stages]
    assert starts == sorted(starts)
    assert all(s.status.status_code is not StatusCode.ERROR for s in stages)

    context = spy.context
    attrs = run.attributes
    assert attrs[semconv.ATTR_SESSION_ID] == str(context.session_id)
    assert attrs[semconv.ATTR_PIPELINE_ID] == str(context.pipeline_id)
    assert attrs[semconv.ATTR_TRACE_ID] == spy.trace_id_at_start
    assert attrs[semconv.ATTR_PIPELINE_NAME] == "ondine"
    assert attrs[semconv.ATTR_ROWS_TOTAL] == context.total_rows == 20
    assert attrs[semconv.ATTR_ROWS_PROCESSED] == context.last_processed_row + 1
    assert attrs[semconv.ATTR_ROWS_FAILED] == context.failed_rows
    assert attrs[semconv.ATTR_ROWS_SKIPPED] == context.skipped_rows
    assert attrs[semconv.ATTR_COST_USD] == pytest.approx(float(context.accumulated_cost))
    assert attrs[semconv.ATTR_COST_USD] == pytest.approx(float(result.costs.total_cost))
    assert attrs[semconv.ATTR_TOKENS_TOTAL] == context.accumulated_tokens
    assert attrs[semconv.ATTR_TOKENS_INPUT] == context.run_progress.input_tokens
    assert attrs[semconv.ATTR_TOKENS_OUTPUT] == context.run_progress.output_tokens
    assert attrs[semconv.ATTR_ROWS_PER_SECOND] > 0
    assert attrs[semconv.ATTR_RESUMED] is False
    assert attrs[semconv.ATTR_LLM_MODEL] == "gpt-4o-mini"
    assert attrs[semconv.ATTR_LLM_PROVIDER] == "openai"
    # Not an LLM call to trace stores: no GenAI attribute, and an explicit OpenInference kind.
    assert not [key for key in attrs if key.startswith("gen_ai.")]
    assert attrs[semconv.OPENINFERENCE_SPAN_KIND] == semconv.KIND_CHAIN
    assert {s.attributes[semconv.OPENINFERENCE_SPAN_KIND] for s in stages} == {
        semconv.KIND_CHAIN
    }
    assert not [key for s in stages for key in s.attributes if key.startswith("gen_ai.")]

    llm = stage(spans, "LLMInvocation")
    assert llm.attributes[semconv.ATTR_STAGE_COST_USD] == pytest.approx(
        float(context.accumulated_cost)
    )
    assert llm.attributes[semconv.ATTR_STAGE_TOKENS] == context.accumulated_tokens
    assert semconv.EVENT_PROGRESS in event_names(llm)
    progress = next(e for e in llm.events if e.name == semconv.EVENT_PROGRESS)
    assert progress.attributes[semconv.ATTR_ROWS_TOTAL] == 20


def test_run_joins_the_application_span_and_writes_the_trace_id_back(
    instrumented: OndineInstrumentor,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    pipeline = build_demo_pipeline(load_reviews(5), checkpoint_dir=tmp_path)
    spy = ContextSpy()
    pipeline.add_observer(spy)
    app_tracer = tracer_provider.get_tracer("app")
    with app_tracer.start_as_current_span("nightly-job") as app_span:
        pipeline.execute()
    app = app_span.get_span_context()
    run = only_run(span_exporter.get_finished_spans())
    assert run.parent is not None and run.parent.span_id == app.span_id
    assert run.context.trace_id == app.trace_id
    assert spy.context.trace_id == str(uuid.UUID(int=app.trace_id))
    # The original ondine id is kept, and the span id is still ondine's.
    assert run.attributes[semconv.ATTR_TRACE_ID] == spy.trace_id_at_start
    assert run.context.span_id == uuid.UUID(spy.span_id_at_start).int & (2**64 - 1)


_SUBPROCESS_JOB = """
import json, sys, tempfile
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import PROMPT, build_demo_pipeline
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.runtime import runtime

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
OndineInstrumentor().instrument(tracer_provider=provider)
build_demo_pipeline(load_reviews(3), checkpoint_dir=tempfile.mkdtemp()).execute()
run = [s for s in exporter.get_finished_spans() if s.name == "ondine.pipeline"][0]
sys.stderr.write("RESULT " + json.dumps({
    "trace_id": f"{run.context.trace_id:032x}",
    "parent_span_id": f"{run.parent.span_id:016x}" if run.parent else None,
}) + "\\n")
"""


def test_traceparent_environment_variable_is_the_parent(tmp_path: Path) -> None:
    trace_hex, span_hex = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    env = {**os.environ, "TRACEPARENT": f"00-{trace_hex}-{span_hex}-01"}
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_JOB],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stderr.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result == {"trace_id": trace_hex, "parent_span_id": span_hex}


def test_fail_policy_marks_stage_and_run_as_errors(
    instrumented: OndineInstrumentor, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    pipeline = build_demo_pipeline(
        load_reviews(20),
        client=_client(failure_rate=0.3),
        error_policy="fail",
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(Exception):  # noqa: B017 - ondine's own error type is not our contract
        pipeline.execute()
    spans = span_exporter.get_finished_spans()
    run = only_run(spans)
    llm = stage(spans, "LLMInvocation")
    for span in (llm, run):
        assert span.status.status_code is StatusCode.ERROR
        assert "exception" in event_names(span)
    assert semconv.EVENT_CHECKPOINT in event_names(run)


@pytest.mark.parametrize("entry", ["instrumentor", "add_observer", "both"])
def test_keyboard_interrupt_ends_the_run_once_with_a_checkpoint_event(
    entry: str,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    instrumentor = OndineInstrumentor()
    if entry != "add_observer":
        instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        pipeline = build_demo_pipeline(
            load_reviews(30), client=_client(interrupt_after=5), checkpoint_dir=tmp_path
        )
        if entry != "instrumentor":
            pipeline.add_observer(OtelObserver(tracer_provider))
        with pytest.raises(KeyboardInterrupt):
            pipeline.execute()
    finally:
        instrumentor.uninstrument()
    spans = span_exporter.get_finished_spans()
    run = only_run(spans)
    assert run.status.status_code is StatusCode.ERROR
    assert "KeyboardInterrupt" in (run.status.description or "")
    checkpoint = next(e for e in run.events if e.name == semconv.EVENT_CHECKPOINT)
    assert checkpoint.attributes[semconv.ATTR_CHECKPOINT_SAVED] is True
    assert checkpoint.attributes[semconv.ATTR_CHECKPOINT_BYTES] > 0
    # The interrupted stage span is closed too, nothing is left current or active.
    assert stage(spans, "LLMInvocation").status.status_code is StatusCode.ERROR
    assert not trace.get_current_span().get_span_context().is_valid
    assert runtime.get().registry.active() == []
    # A next run on this thread is a new root trace, not a child of the interrupted one.
    span_exporter.clear()
    follow_up = build_demo_pipeline(load_reviews(3), checkpoint_dir=tmp_path / "next")
    follow_up.add_observer(OtelObserver(tracer_provider))
    follow_up.execute()
    assert only_run(span_exporter.get_finished_spans()).parent is None


def test_resumed_run_links_to_the_crashed_run(
    instrumented: OndineInstrumentor, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    df = load_reviews(30)
    crashing = build_demo_pipeline(
        df,
        client=_client(crash_after=10),
        error_policy="fail",
        concurrency=1,
        checkpoint_dir=tmp_path,
    )
    with pytest.raises(Exception):  # noqa: B017
        crashing.execute()
    crashed = only_run(span_exporter.get_finished_spans())
    session_id = uuid.UUID(crashed.attributes[semconv.ATTR_SESSION_ID])
    span_exporter.clear()

    resumed_pipeline = build_demo_pipeline(df, checkpoint_dir=tmp_path, concurrency=1)
    resumed_pipeline.execute(resume_from=session_id)
    resumed = only_run(span_exporter.get_finished_spans())

    assert resumed.attributes[semconv.ATTR_RESUMED] is True
    assert resumed.context.trace_id != crashed.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in resumed.links] == [
        (crashed.context.trace_id, crashed.context.span_id)
    ]
    restored = next(e for e in resumed.events if e.name == semconv.EVENT_CHECKPOINT_RESTORED)
    assert restored.attributes[semconv.ATTR_RESUMED_FROM_TRACE_ID] == (
        f"{crashed.context.trace_id:032x}"
    )
    assert restored.attributes[semconv.ATTR_CHECKPOINT_ROW] >= 0


def test_four_concurrent_pipelines_give_four_nested_traces(
    instrumented: OndineInstrumentor, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            build_demo_pipeline(
                load_reviews(25),
                client=_client(latency_s=0.002),
                checkpoint_dir=tmp_path / str(index),
            ).execute()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    spans = span_exporter.get_finished_spans()
    run_spans = runs(spans)
    assert len(run_spans) == 4
    assert len({r.context.trace_id for r in run_spans}) == 4
    for run in run_spans:
        in_trace = [s for s in spans if s.context.trace_id == run.context.trace_id]
        stages = stages_of(spans, run)
        llm_stage = next(s for s in stages if s.name == "ondine.stage LLMInvocation")
        calls = [s for s in in_trace if s.name == "chat gpt-4o-mini"]
        assert len(calls) == 25
        assert all(
            c.parent is not None and c.parent.span_id == llm_stage.context.span_id for c in calls
        )
        assert len(in_trace) == 1 + len(stages) + len(calls)
        assert [s.attributes[semconv.ATTR_STAGE_INDEX] for s in stages] == list(range(len(stages)))


class ExplodingProcessor(SpanProcessor):
    """A span processor that fails on every span end (a broken exporter pipeline)."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter exploded")


def test_a_failing_span_processor_does_not_change_the_result(tmp_path: Path) -> None:
    df = load_reviews(40)
    bare = build_demo_pipeline(df, client=_client(failure_rate=0.1), checkpoint_dir=tmp_path / "a")
    expected = bare.execute()

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(ExplodingProcessor())
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        pipeline = build_demo_pipeline(
            df, client=_client(failure_rate=0.1), checkpoint_dir=tmp_path / "b"
        )
        actual = pipeline.execute()
    finally:
        instrumentor.uninstrument()
    pd.testing.assert_frame_equal(_frame(actual.data), _frame(expected.data))
    assert actual.costs.total_cost == expected.costs.total_cost
    assert only_run(exporter.get_finished_spans()).status.status_code is StatusCode.UNSET


def _frame(data: Any) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else data.to_pandas()


def test_instrumentation_keeps_ondine_default_observers(
    instrumented: OndineInstrumentor, tmp_path: Path
) -> None:
    pipeline = build_demo_pipeline(load_reviews(5), checkpoint_dir=tmp_path)
    pipeline.execute()
    kinds = {type(o).__name__ for o in pipeline.observers}
    assert {"ProgressBarObserver", "LoggingObserver", "CostTrackingObserver"} <= kinds
    assert "OtelObserver" not in kinds  # attached for the call only


def test_uninstrument_stops_tracing(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    instrumentor.uninstrument()
    build_demo_pipeline(load_reviews(5), checkpoint_dir=tmp_path).execute()
    assert span_exporter.get_finished_spans() == ()


class _OtherObserver(PipelineObserver):
    """Some other named observer the user configured (ondine builds a dispatcher for it)."""

    calls = 0

    def on_llm_call(self, event: Any) -> None:
        type(self).calls += 1


@pytest.mark.parametrize("named", ["test-other-observer", "otel"])
def test_llm_calls_are_recorded_once_beside_named_observers(
    named: str,
    instrumented: OndineInstrumentor,
    span_exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    if not ObserverRegistry.is_registered("test-other-observer"):
        ObserverRegistry.register("test-other-observer", _OtherObserver)
    _OtherObserver.calls = 0
    pipeline = (
        PipelineBuilder.create()
        .from_dataframe(load_reviews(12), input_columns=["review"], output_columns=["sentiment"])
        .with_prompt(PROMPT)
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-offline")
        .with_custom_llm_client(_client())
        .with_checkpoint_dir(str(tmp_path))
        .with_observer(named, {})
        .build()
    )
    pipeline.execute()
    chat = [s for s in span_exporter.get_finished_spans() if s.name == "chat gpt-4o-mini"]
    assert len(chat) == 12
    assert _OtherObserver.calls == (12 if named != "otel" else 0)
