"""Only a provider call is an LLM span, in every shape a call can take.

Trace stores that classify spans (Arize Phoenix) read `openinference.span.kind`, else take any
span with a `gen_ai.request.model` for an LLM call and count and price it as one. So every span
ondine-otel makes states its kind: `chat` spans `LLM`; run, stage, stream and composition spans
`CHAIN` with no `gen_ai.*` attribute. Checked on a plain run, a stream and a composed call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ondine.api.pipeline_composer import PipelineComposer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ondine_otel import OtelObserver
from ondine_otel.telemetry import semconv
from tests.modes.offline import litellm_builder, reviews

ROWS = 6


def _observed(builder: Any, tracer_provider: TracerProvider) -> Any:
    pipeline = builder.build()
    pipeline.add_observer(OtelObserver(tracer_provider, MeterProvider()))
    return pipeline


def _plain(tracer_provider: TracerProvider, tmp_path: Path) -> None:
    _observed(litellm_builder(reviews(ROWS), tmp_path), tracer_provider).execute()


def _stream(tracer_provider: TracerProvider, tmp_path: Path) -> None:
    builder = litellm_builder(reviews(ROWS), tmp_path).with_streaming(chunk_size=ROWS // 2)
    for _ in _observed(builder, tracer_provider).execute_stream(chunk_size=ROWS // 2):
        pass


def _composed(tracer_provider: TracerProvider, tmp_path: Path) -> None:
    df = reviews(ROWS)
    first = litellm_builder(df, tmp_path / "a", output="label")
    second = litellm_builder(df, tmp_path / "b", output="reason", source="label")
    (
        PipelineComposer(df)
        .add_column("label", _observed(first, tracer_provider))
        .add_column("reason", _observed(second, tracer_provider), depends_on=["label"])
        .execute()
    )


@pytest.mark.parametrize(
    "call", [_plain, _stream, _composed], ids=["execute", "stream", "composed"]
)
def test_only_chat_spans_are_llm_spans(
    call: Callable[[TracerProvider, Path], None],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    call(tracer_provider, tmp_path)
    spans = span_exporter.get_finished_spans()
    chats = [s for s in spans if s.name.startswith(f"{semconv.SPAN_LLM_OPERATION} ")]
    others = [s for s in spans if s not in chats]
    assert chats and others
    for span in chats:
        assert (span.attributes or {})[semconv.OPENINFERENCE_SPAN_KIND] == semconv.KIND_LLM
    for span in others:
        attributes = dict(span.attributes or {})
        assert attributes.get(semconv.OPENINFERENCE_SPAN_KIND) == semconv.KIND_CHAIN, span.name
        assert not [key for key in attributes if key.startswith("gen_ai.")], span.name
        assert not [key for key in attributes if key.startswith("llm.")], span.name
