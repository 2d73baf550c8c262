"""Older ondine contexts (the seed document's shape) pass through every hook without error."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ondine_otel import OtelObserver
from ondine_otel.telemetry import guard, run, semconv
from tests.traces import only_run, stage


@dataclass
class SeedContext:
    """Only the fields of the seed document's ExecutionContext: no run_progress, no observers."""

    session_id: uuid.UUID = field(default_factory=uuid.uuid4)
    pipeline_id: uuid.UUID = field(default_factory=uuid.uuid4)
    start_time: datetime = field(default_factory=datetime.now)
    end_time: datetime | None = None
    current_stage_index: int = 0
    last_processed_row: int = 0
    total_rows: int = 0
    accumulated_cost: Decimal = field(default_factory=lambda: Decimal("0.0"))
    accumulated_tokens: int = 0
    intermediate_data: dict[str, Any] = field(default_factory=dict)


class Stage:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def failures(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every error our guards swallowed: a seed context must cause none."""
    seen: list[str] = []

    def record(site: str, error: Exception) -> None:
        seen.append(f"{site}: {error!r}")

    monkeypatch.setattr(guard, "report", record)
    monkeypatch.setattr(run, "report", record)
    return seen


@pytest.mark.parametrize("with_ids", [True, False])
def test_seed_context_passes_every_hook(
    with_ids: bool,
    failures: list[str],
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    context: Any = SeedContext()
    if with_ids:
        context.trace_id = str(uuid.uuid4())
        context.span_id = str(uuid.uuid4())
    observer = OtelObserver(tracer_provider, progress_interval=0)
    pipeline = object()  # no specifications, no observers list

    observer.on_pipeline_start(pipeline, context)
    loader = Stage("DataLoader")
    observer.on_stage_start(loader, context)
    context.total_rows = 10
    observer.on_stage_complete(loader, context, None)
    llm = Stage("LLMInvocation")
    observer.on_stage_start(llm, context)
    context.last_processed_row = 4
    context.accumulated_cost = Decimal("0.25")
    context.accumulated_tokens = 100
    observer.on_progress_update(context)
    observer.on_stage_error(llm, context, RuntimeError("provider down"))
    observer.on_pipeline_error(context, RuntimeError("provider down"))
    observer.on_pipeline_complete(context, None)  # a late second end is ignored

    assert failures == []
    spans = span_exporter.get_finished_spans()
    run_span = only_run(spans)
    assert run_span.attributes[semconv.ATTR_COST_USD] == pytest.approx(0.25)
    assert run_span.attributes[semconv.ATTR_TOKENS_TOTAL] == 100
    assert run_span.attributes[semconv.ATTR_ROWS_TOTAL] == 10
    assert semconv.ATTR_TOKENS_INPUT not in run_span.attributes  # no split known
    if with_ids:
        assert run_span.context.trace_id == uuid.UUID(context.trace_id).int
    else:
        assert run_span.attributes[semconv.ATTR_TRACE_ID] == ""
    llm_span = stage(spans, "LLMInvocation")
    assert [e.name for e in llm_span.events][:1] == [semconv.EVENT_PROGRESS]
    assert llm_span.attributes[semconv.ATTR_STAGE_COST_USD] == pytest.approx(0.25)


def test_hooks_survive_a_context_that_breaks_on_every_read(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"no {name}")

    observer = OtelObserver(tracer_provider)
    hostile: Any = Hostile()
    observer.on_pipeline_start(hostile, hostile)
    observer.on_stage_start(Stage("DataLoader"), hostile)
    observer.on_stage_complete(Stage("DataLoader"), hostile, None)
    observer.on_progress_update(hostile)
    observer.on_pipeline_complete(hostile, None)
    observer.on_pipeline_error(hostile, RuntimeError("x"))
