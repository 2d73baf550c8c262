"""The chat span policy on synthetic call times: first N, failures, then a steady rate."""

from __future__ import annotations

from decimal import Decimal

from ondine.core.models import LLMResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ondine_otel.telemetry import call_record
from ondine_otel.telemetry.llm_calls import LLMCalls

SECOND = 1_000_000_000
RESPONSE = LLMResponse(
    text="positive", tokens_in=9, tokens_out=1, model="gpt-4o-mini",
    cost=Decimal("0.00001"), latency_ms=1.0,
)  # fmt: skip


def recorder(**policy: float) -> tuple[LLMCalls, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = {"first_n": 2, "error_limit": 2, "rate": 0.0, "capture_content": False}
    settings.update(policy)
    calls = LLMCalls(
        provider.get_tracer("test"), (), provider="openai", model="gpt-4o-mini",
        first_n=int(settings["first_n"]), error_limit=int(settings["error_limit"]),
        rate=settings["rate"], capture_content=bool(settings["capture_content"]),
    )  # fmt: skip
    return calls, exporter


def test_after_the_first_calls_only_failures_get_spans_up_to_their_cap() -> None:
    calls, exporter = recorder()
    for index in range(10):
        end = (index + 1) * SECOND
        if index % 2:
            calls.record(
                call_record.from_error(end - 1000, end, TimeoutError("slow"), ("prompt",), {})
            )
        else:
            calls.record(call_record.from_response(end - 1000, end, RESPONSE, ("prompt",), {}))
    spans = exporter.get_finished_spans()
    statuses = [s.status.status_code for s in spans]
    assert statuses == [StatusCode.UNSET, StatusCode.ERROR, StatusCode.ERROR, StatusCode.ERROR]
    assert calls.dropped == 6
    failed = spans[1]
    assert (failed.attributes or {})["error.type"] == "TimeoutError"
    assert failed.end_time is not None and failed.start_time == failed.end_time - 1000


def test_successful_calls_after_the_first_are_sampled_at_the_rate() -> None:
    calls, exporter = recorder(rate=2.0, first_n=0)
    # 100 calls spread evenly over 10 s: at 2 per second about 20 get a span.
    for index in range(100):
        end = SECOND + index * SECOND // 10
        calls.record(call_record.from_response(end - 1000, end, RESPONSE, ("prompt",), {}))
    kept = len(exporter.get_finished_spans())
    assert 18 <= kept <= 20
    assert calls.dropped == 100 - kept


def test_a_zero_policy_records_no_span_but_counts_every_call() -> None:
    calls, exporter = recorder(first_n=0, error_limit=0)
    for index in range(5):
        calls.record(call_record.from_error(index, index + 10, ValueError("bad"), ("prompt",), {}))
    assert exporter.get_finished_spans() == ()
    assert calls.dropped == 5
