"""Crash and resume three times on one ondine session: one linked trace per attempt, exact totals.

Real `Pipeline.execute(resume_from=session_id)` from ondine's own checkpoints; the counters are
compared with what ondine and the client say was done, attempt by attempt.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.telemetry import semconv
from tests.reliability.conftest import Figures
from tests.spy import ContextSpy
from tests.traces import runs

pytestmark = pytest.mark.reliability

ROWS = 60
CRASH_AFTER = 15  # successful calls per attempt before the client crashes
CRASHES = 3


class StartSpy(ContextSpy):
    """Also keeps what the context held at start: a resumed run starts from its checkpoint."""

    def on_pipeline_start(self, pipeline: Any, context: Any) -> None:
        super().on_pipeline_start(pipeline, context)
        self.start_cost = context.accumulated_cost
        self.start_tokens = context.accumulated_tokens
        self.start_row = context.last_processed_row


@pytest.fixture
def metered() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def _totals(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    data = reader.get_metrics_data()
    out: dict[tuple[tuple[str, Any], ...], float] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        key = tuple(sorted(dict(point.attributes or {}).items()))
                        out[key] = out.get(key, 0.0) + float(point.value)  # type: ignore[union-attr]
    return out


def test_three_crashes_and_resumes_give_linked_traces_and_exact_totals(
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
    metered: tuple[MeterProvider, InMemoryMetricReader],
    tmp_path: Path,
    figures: Figures,
) -> None:
    meter_provider, metric_reader = metered
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    df = load_reviews(ROWS)
    session: uuid.UUID | None = None
    spies: list[StartSpy] = []
    clients: list[OfflineLLMClient] = []
    final: Any = None
    try:
        for attempt in range(CRASHES + 1):
            client = OfflineLLMClient(crash_after=CRASH_AFTER if attempt < CRASHES else None)
            pipeline = build_demo_pipeline(
                df, client=client, error_policy="fail", concurrency=1,
                checkpoint_dir=tmp_path, checkpoint_interval=5,
            )  # fmt: skip
            spy = StartSpy()
            pipeline.add_observer(spy)
            kwargs = {"resume_from": session} if session is not None else {}
            if attempt < CRASHES:
                with pytest.raises(RuntimeError, match="simulated crash"):
                    pipeline.execute(**kwargs)
            else:
                final = pipeline.execute(**kwargs)
            session = spy.context.session_id
            spies.append(spy)
            clients.append(client)
    finally:
        instrumentor.uninstrument()

    run_spans = sorted(runs(span_exporter.get_finished_spans()), key=lambda s: s.start_time or 0)
    traces = [s.context.trace_id for s in run_spans]
    links_ok = all(
        [(link.context.trace_id, link.context.span_id) for link in later.links]
        == [(earlier.context.trace_id, earlier.context.span_id)]
        for earlier, later in itertools.pairwise(run_spans)
    )
    cost = sum(_totals(metric_reader, semconv.METRIC_COST).values())
    tokens = sum(_totals(metric_reader, semconv.METRIC_TOKENS).values())
    rows = sum(_totals(metric_reader, semconv.METRIC_ROWS_PROCESSED).values())
    by_status = {
        dict(key).get(semconv.LABEL_STATUS): value
        for key, value in _totals(metric_reader, semconv.METRIC_RUNS).items()
    }
    # The work each attempt did: what its context gained over what it restored.
    done_cost = sum(float(s.context.accumulated_cost - s.start_cost) for s in spies)
    done_tokens = sum(s.context.accumulated_tokens - s.start_tokens for s in spies)
    done_rows = sum(s.context.last_processed_row - s.start_row for s in spies)
    calls = sum(c.success_count for c in clients)
    figures.record(
        "crash and resume 3 times on one session_id",
        "one trace per attempt in Jaeger/Tempo, each linked to the attempt it resumed",
        "linked traces; counters equal the work done (restored work not counted twice)",
        f"{len(set(traces))} traces for {CRASHES + 1} attempts, "
        f"links {'ok' if links_ok else 'BROKEN'}; "
        f"rows {rows:g}/{done_rows}, cost {cost:.8f}/{done_cost:.8f} USD, runs {by_status}",
    )
    assert len(run_spans) == CRASHES + 1 and len(set(traces)) == CRASHES + 1
    assert {(s.attributes or {})[semconv.ATTR_SESSION_ID] for s in run_spans} == {str(session)}
    assert [s.status.status_code is StatusCode.ERROR for s in run_spans] == [True] * CRASHES + [
        False
    ]
    assert links_ok
    resumed = [(s.attributes or {})[semconv.ATTR_RESUMED] for s in run_spans]
    assert resumed == [False] + [True] * CRASHES
    for run in run_spans[1:]:
        assert semconv.EVENT_CHECKPOINT_RESTORED in [e.name for e in run.events]
    assert done_rows == calls == ROWS  # concurrency 1: no row is redone after a crash
    assert rows == ROWS
    assert cost == pytest.approx(done_cost, rel=1e-9)
    assert cost == pytest.approx(float(final.costs.total_cost), rel=1e-9)
    assert tokens == done_tokens == spies[-1].context.accumulated_tokens
    assert by_status == {"error": CRASHES, "success": 1}
