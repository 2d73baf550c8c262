"""Trace stores read a run right: a real Arize Phoenix, fed over OTLP, asked through its own API.

Phoenix classifies spans by `openinference.span.kind`, else infers it from GenAI attributes (a
span with `gen_ai.request.model` is an LLM call), and prices only LLM spans, from their model and
token counts with its own price table. A run must therefore be one CHAIN of stages whose calls
are the only LLM spans, and the trace's cost and tokens in Phoenix must be ondine's. Before the
run span named its model `ondine.llm.model`, Phoenix showed it as an LLM call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ondine_otel import OtelObserver
from ondine_otel.telemetry import semconv
from tests.modes.offline import litellm_builder, reviews
from tests.support.phoenix import spans, start_phoenix, trace_summary
from tests.support.services import Service
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

ROWS = 6


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with start_phoenix(tmp_path_factory.mktemp("phoenix")) as service:
        yield service


def test_phoenix_sees_one_chain_whose_calls_are_the_llm_spans_and_ondines_cost(
    phoenix: Service,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{phoenix.url}/v1/traces"))
    )
    pipeline = litellm_builder(reviews(ROWS), tmp_path).build()
    pipeline.add_observer(OtelObserver(tracer_provider, MeterProvider()))
    result = pipeline.execute()
    assert tracer_provider.force_flush(30_000)

    sent = span_exporter.get_finished_spans()
    run = next(s for s in sent if s.name == semconv.SPAN_RUN)
    trace_id = format(run.context.trace_id, "032x")

    def stored() -> list[dict[str, Any]]:
        found = spans(phoenix, trace_id)
        return found if len(found) == len(sent) else []

    kinds = {
        span["context"]["span_id"]: (span["name"], span["span_kind"])
        for span in wait_until(
            stored, timeout=30, interval=0.25, message=lambda: f"{phoenix.log_tail()}"
        )
    }
    by_name: dict[str, set[str]] = {}
    for name, kind in kinds.values():
        by_name.setdefault(name, set()).add(kind)
    assert by_name.pop(semconv.SPAN_RUN) == {"CHAIN"}
    stages = {name for name in by_name if name.startswith(semconv.SPAN_STAGE_PREFIX)}
    assert f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation" in stages
    assert {kind for name in stages for kind in by_name.pop(name)} == {"CHAIN"}
    assert by_name == {"chat gpt-4o-mini": {"LLM"}}
    assert sum(1 for name, _ in kinds.values() if name.startswith("chat ")) == ROWS

    # Phoenix prices the calls itself: the trace's cost and tokens must be ondine's.
    tokens = result.costs.input_tokens + result.costs.output_tokens
    assert tokens > 0 and result.costs.total_cost > 0

    def priced() -> dict[str, Any] | None:
        summary = trace_summary(phoenix, trace_id)
        total = (summary or {}).get("costSummary", {}).get("total", {})
        return summary if total.get("cost") and total.get("tokens") == tokens else None

    summary = wait_until(priced, timeout=30, interval=0.25, message=phoenix.log_tail)
    assert summary is not None
    assert summary["numSpans"] == len(sent)
    assert summary["costSummary"]["total"]["cost"] == pytest.approx(
        float(result.costs.total_cost), rel=1e-6
    )
    root = summary["rootSpan"]
    assert root["name"] == semconv.SPAN_RUN and root["spanKind"] == "chain"
    assert not root["tokenCountTotal"]  # the run's own tokens would double the calls'
    assert root["cumulativeTokenCountTotal"] == tokens
