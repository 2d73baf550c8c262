"""Issue "Metered runs": one GenAI CLIENT span and semconv histograms per LLM call (sections 2-3).

The first tests drive ondine's REAL LiteLLM client offline (litellm's `mock_response`), so what
is checked is what ondine's own client reports; the others use the offline demo client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pandas as pd
import pytest
from ondine import PipelineBuilder
from ondine.api.pipeline import Pipeline
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ondine_otel.demo import build_demo_pipeline
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.instruments import (
    GENAI_DURATION_BUCKETS,
    GENAI_TOKEN_BUCKETS,
    metric_views,
)

pytestmark = pytest.mark.integration

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: The semconv boundaries, spelled out: the contract, not a copy of the module's constants.
SEMCONV_DURATION_BOUNDS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
SEMCONV_TOKEN_BOUNDS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
#: Words that appear only in the input data, never in a name or label we emit.
SECRET_WORD = "quokkaberry"
EMAIL = "jane.quokka@example.org"


@dataclass
class Rig:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.spans.get_finished_spans())

    def histograms(self, name: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
            if isinstance(point, HistogramDataPoint)
        ]


def make_rig(*, views: bool) -> Rig:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = (
        MeterProvider(metric_readers=[reader], views=metric_views())
        if views
        else MeterProvider(metric_readers=[reader])
    )
    return Rig(spans, reader, tracer_provider, meter_provider)


@pytest.fixture
def rig_factory() -> Iterator[Any]:
    """`rig_factory(views=..., **instrument_kwargs)`: providers + the instrumentor, undone after."""
    made: list[Rig] = []
    instrumentor = OndineInstrumentor()

    def factory(*, views: bool = True, **kwargs: Any) -> Rig:
        rig = make_rig(views=views)
        made.append(rig)
        instrumentor.instrument(
            tracer_provider=rig.tracer_provider, meter_provider=rig.meter_provider, **kwargs
        )
        return rig

    try:
        yield factory
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        for rig in made:
            rig.meter_provider.shutdown()
            rig.tracer_provider.shutdown()


def litellm_pipeline(df: pd.DataFrame, checkpoint_dir: Path) -> Pipeline:
    """ondine's own LiteLLM client, answered offline by litellm's mock_response."""
    return (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=["review"], output_columns=["sentiment"])
        .with_prompt("Classify the sentiment of this review: {review}")
        .with_llm(
            provider="openai",
            model="gpt-4o-mini",
            api_key="sk-test",
            extra_params={"mock_response": "positive"},
        )
        .with_checkpoint_dir(str(checkpoint_dir))
        .build()
    )


def reviews(*texts: str) -> pd.DataFrame:
    return pd.DataFrame({"id": range(1, len(texts) + 1), "review": list(texts)})


def chat_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.name == "chat gpt-4o-mini"]


def only(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def count(span: ReadableSpan, key: str) -> int:
    """An integer span attribute that must be there."""
    value = (span.attributes or {}).get(key)
    assert isinstance(value, int) and not isinstance(value, bool), (span.name, key, value)
    return value


def all_text(span: ReadableSpan) -> str:
    """Every string a backend would store for the span: name, attributes, events, links."""
    parts: list[str] = [span.name, span.status.description or ""]
    attribute_sets = [span.attributes or {}]
    attribute_sets += [event.attributes or {} for event in span.events]
    attribute_sets += [link.attributes or {} for link in span.links]
    parts += [event.name for event in span.events]
    for attributes in attribute_sets:
        for key, value in attributes.items():
            parts.append(key)
            parts.append(json.dumps(value) if not isinstance(value, str) else value)
            if isinstance(value, tuple):
                parts.extend(str(item) for item in value)
    return "\n".join(parts)


# --- 5. ondine's real LiteLLM client: spans and GenAI histograms --------------------------


@pytest.mark.parametrize("views", [True, False], ids=["with-views", "advisory-only"])
def test_each_litellm_call_is_a_chat_span_under_llm_invocation_with_semconv_histograms(
    views: bool, rig_factory: Any, tmp_path: Path
) -> None:
    rig: Rig = rig_factory(views=views)
    df = reviews("Great kettle", "Broke in a week", "It is fine", "Love it", "Too slow")
    result = litellm_pipeline(df, tmp_path).execute()
    spans = rig.finished()

    run = only(spans, semconv.SPAN_RUN)
    llm_stage = only(spans, f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation")
    calls = chat_spans(spans)
    assert len(calls) == len(df) == result.metrics.processed_rows
    for call in calls:
        assert call.kind is SpanKind.CLIENT
        assert call.parent is not None and call.parent.span_id == llm_stage.context.span_id
        assert call.context.trace_id == run.context.trace_id
        attrs = call.attributes or {}
        assert attrs[semconv.GEN_AI_OPERATION_NAME] == "chat"
        assert attrs[semconv.GEN_AI_PROVIDER_NAME] == "openai"
        assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert count(call, semconv.GEN_AI_USAGE_INPUT_TOKENS) > 0
        assert count(call, semconv.GEN_AI_USAGE_OUTPUT_TOKENS) > 0
        # The same call in OpenInference terms, from which Phoenix-like stores price it.
        assert attrs[semconv.OPENINFERENCE_SPAN_KIND] == semconv.KIND_LLM
        assert attrs[semconv.OPENINFERENCE_LLM_MODEL_NAME] == "gpt-4o-mini"
        assert count(call, semconv.OPENINFERENCE_LLM_TOKENS_PROMPT) == count(
            call, semconv.GEN_AI_USAGE_INPUT_TOKENS
        )
        assert count(call, semconv.OPENINFERENCE_LLM_TOKENS_COMPLETION) == count(
            call, semconv.GEN_AI_USAGE_OUTPUT_TOKENS
        )
        assert count(call, semconv.OPENINFERENCE_LLM_TOKENS_TOTAL) == count(
            call, semconv.GEN_AI_USAGE_INPUT_TOKENS
        ) + count(call, semconv.GEN_AI_USAGE_OUTPUT_TOKENS)
        assert call.start_time is not None and call.end_time is not None
        assert call.start_time <= call.end_time
    # The calls' usage is exactly what ondine billed.
    assert sum(count(c, semconv.GEN_AI_USAGE_INPUT_TOKENS) for c in calls) == (
        result.costs.input_tokens
    )
    assert sum(count(c, semconv.GEN_AI_USAGE_OUTPUT_TOKENS) for c in calls) == (
        result.costs.output_tokens
    )

    durations = rig.histograms(semconv.METRIC_GENAI_DURATION)
    assert len(durations) == 1
    duration = durations[0]
    assert (
        tuple(duration.explicit_bounds) == SEMCONV_DURATION_BOUNDS == tuple(GENAI_DURATION_BUCKETS)
    )
    assert duration.count == len(df)
    assert dict(duration.attributes or {}) == {
        semconv.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_PROVIDER_NAME: "openai",
        semconv.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    }

    usage = {
        (point.attributes or {})[semconv.GEN_AI_TOKEN_TYPE]: point
        for point in rig.histograms(semconv.METRIC_GENAI_TOKENS)
    }
    assert set(usage) == {"input", "output"}
    for point in usage.values():
        assert tuple(point.explicit_bounds) == SEMCONV_TOKEN_BOUNDS == tuple(GENAI_TOKEN_BUCKETS)
        assert point.count == len(df)
    assert usage["input"].sum == result.costs.input_tokens
    assert usage["output"].sum == result.costs.output_tokens


# --- 8. content capture -------------------------------------------------------------------


def test_prompt_and_completion_text_are_not_recorded_by_default(
    rig_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPTURE_ENV, raising=False)
    rig: Rig = rig_factory()
    df = reviews(f"The {SECRET_WORD} blender is great", f"Write to {EMAIL} about it")
    build_demo_pipeline(df, checkpoint_dir=tmp_path).execute()
    spans = rig.finished()
    assert len(chat_spans(spans)) == 2
    for span in spans:
        text = all_text(span)
        assert SECRET_WORD not in text, span.name
        assert EMAIL not in text, span.name
        assert semconv.GEN_AI_INPUT_MESSAGES not in (span.attributes or {})
        assert semconv.GEN_AI_OUTPUT_MESSAGES not in (span.attributes or {})


@pytest.mark.parametrize("switch", ["argument", "environment"])
def test_captured_content_is_redacted(
    switch: str, rig_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if switch == "environment":
        monkeypatch.setenv(CAPTURE_ENV, "true")
        rig: Rig = rig_factory()
    else:
        monkeypatch.delenv(CAPTURE_ENV, raising=False)
        rig = rig_factory(capture_content=True)
    df = reviews(f"The {SECRET_WORD} blender is great, mail {EMAIL} for a refund")
    build_demo_pipeline(df, checkpoint_dir=tmp_path).execute()
    spans = rig.finished()

    (call,) = chat_spans(spans)
    attrs = call.attributes or {}
    inputs = json.loads(str(attrs[semconv.GEN_AI_INPUT_MESSAGES]))
    user = next(m for m in inputs if m["role"] == "user")
    content = user["parts"][0]["content"]
    assert SECRET_WORD in content  # the prompt is captured...
    assert "[REDACTED_EMAIL]" in content  # ...with the address replaced
    assert EMAIL not in content
    outputs = json.loads(str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES]))
    assert [m["role"] for m in outputs] == ["assistant"]
    assert outputs[0]["parts"][0]["content"] in {"positive", "negative", "neutral"}
    for span in spans:
        assert EMAIL not in all_text(span), span.name


# --- 9. per-run LLM span cap ----------------------------------------------------------------


def test_llm_spans_are_capped_per_run_but_histograms_count_every_call(
    rig_factory: Any, tmp_path: Path
) -> None:
    rig: Rig = rig_factory(llm_span_limit=5, llm_span_rate=0)
    df = reviews(*(f"Review number {index} is great" for index in range(20)))
    build_demo_pipeline(df, checkpoint_dir=tmp_path).execute()
    spans = rig.finished()

    assert len(chat_spans(spans)) == 5
    run = only(spans, semconv.SPAN_RUN)
    assert (run.attributes or {})[semconv.ATTR_LLM_SPANS_DROPPED] == 15
    (duration,) = rig.histograms(semconv.METRIC_GENAI_DURATION)
    assert duration.count == 20
    usage = rig.histograms(semconv.METRIC_GENAI_TOKENS)
    assert sorted(point.count for point in usage) == [20, 20]
