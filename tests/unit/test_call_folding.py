"""Calls reach the metric sinks in batches: the batch path must count exactly what one `add`
per value would, boundaries included, and a collection must see every call made before it."""

from __future__ import annotations

import random
import threading
import weakref
from typing import Any

from opentelemetry import trace

from ondine_otel.telemetry import call_record, instruments
from ondine_otel.telemetry.aggregation import BucketCounts, CallAggregates
from ondine_otel.telemetry.call_record import CallRecord
from ondine_otel.telemetry.llm_calls import FOLD_CALLS, LLMCalls, timed

KEY = ("openai", "gpt-4o-mini", None)


def _one_by_one(bounds: tuple[float, ...], values: list[float]) -> BucketCounts:
    histogram = BucketCounts(bounds)
    for value in values:
        histogram.add(value)
    return histogram


def test_a_batch_counts_as_one_add_per_value_boundaries_included() -> None:
    rng = random.Random(7)
    bounds = tuple(instruments.GENAI_DURATION_BUCKETS)
    durations = [rng.choice(bounds) for _ in range(200)] + [rng.uniform(0, 120) for _ in range(800)]
    tokens = [rng.choice([0, 1, 4, 45, 1024, 10**7]) for _ in range(1000)]
    aggregates = CallAggregates(bounds, instruments.GENAI_TOKEN_BUCKETS)
    record = aggregates.recorder(KEY)
    calls = [
        CallRecord(0, round(d * 1e9), "gpt-4o-mini", t, t // 2)
        for d, t in zip(durations, tokens, strict=True)
    ]
    for start in range(0, len(calls), 97):  # uneven batches
        record(calls[start : start + 97])
    series = aggregates.snapshot()[KEY]
    expected = {
        "duration": _one_by_one(bounds, [round(d * 1e9) / 1e9 for d in durations]),
        "input_tokens": _one_by_one(tuple(instruments.GENAI_TOKEN_BUCKETS), tokens),
        "output_tokens": _one_by_one(
            tuple(instruments.GENAI_TOKEN_BUCKETS), [t // 2 for t in tokens]
        ),
    }
    for name, want in expected.items():
        got = getattr(series, name)
        assert got.counts == want.counts, name
        assert (got.count, got.min, got.max) == (want.count, want.min, want.max), name
        assert abs(got.sum - want.sum) <= 1e-6 * max(1.0, abs(want.sum)), name


def _calls(aggregates: CallAggregates) -> LLMCalls:
    return LLMCalls(
        trace.NoOpTracer(), [lambda p, m, e: aggregates.recorder((p, m, e))],
        provider="openai", model="gpt-4o-mini", first_n=0, error_limit=0, rate=0.0,
        capture_content=False,
    )  # fmt: skip


def test_every_call_is_folded_by_the_time_anyone_reads() -> None:
    aggregates = CallAggregates(instruments.GENAI_DURATION_BUCKETS, instruments.GENAI_TOKEN_BUCKETS)
    calls = _calls(aggregates)
    threads = [
        threading.Thread(
            target=lambda: [
                calls.record(CallRecord(0, 1_000_000, "gpt-4o-mini", 3, 1))
                for _ in range(FOLD_CALLS * 3 + 5)
            ]
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(7):
        calls.record(CallRecord(0, 1, None, None, None, error=TimeoutError()))
    assert calls.dropped == 4 * (FOLD_CALLS * 3 + 5) + 7  # reading folds the rest
    series = aggregates.snapshot()
    assert series[KEY].duration.count == 4 * (FOLD_CALLS * 3 + 5)
    assert series[KEY].input_tokens.sum == 3 * 4 * (FOLD_CALLS * 3 + 5)
    failed = series[("openai", "gpt-4o-mini", "TimeoutError")]
    assert failed.duration.count == 7 and failed.input_tokens.count == 0


class _Source:
    """The run a wrapped client's calls record into (as `hooks.client`'s patch of one run)."""

    def __init__(self, calls: LLMCalls) -> None:
        self.sole: LLMCalls | None = calls

    def current(self) -> LLMCalls | None:
        return self.sole


def _responded(
    calls: LLMCalls, start_ns: int, end_ns: int, response: Any, *args: Any, **kwargs: Any
) -> None:
    """One successful call through the client wrapper (`timed`), its clock reading `start_ns`
    then `end_ns`; driven without an event loop (the call never suspends)."""
    ticks = iter((start_ns, end_ns))

    async def original(*_: Any, **__: Any) -> Any:
        return response

    call = timed(original, _Source(calls), lambda: next(ticks))(*args, **kwargs)
    try:
        call.send(None)
    except StopIteration as done:
        assert done.value is response
    else:
        raise AssertionError("the wrapped call suspended")


class _Response:
    """Stands for ondine's LLMResponse (weakly referable)."""

    model = "gpt-4o-mini"
    tokens_in = 45
    tokens_out = 1


class _Kwargs(dict[str, str]):
    """A call's keyword arguments (a dict that can be weakly referred to)."""


def test_a_call_waiting_to_be_folded_keeps_no_response_or_arguments_alive() -> None:
    """Waiting calls are plain tuples of numbers and names: a source object kept until the
    fold would outlive its row and reach the collector's oldest generation."""
    aggregates = CallAggregates(instruments.GENAI_DURATION_BUCKETS, instruments.GENAI_TOKEN_BUCKETS)
    calls = _calls(aggregates)
    response, args, kwargs = _Response(), ("prompt",), _Kwargs(system_message="be brief")
    gone = [weakref.ref(response), weakref.ref(kwargs)]
    calls.fold()  # starts the fold timer (a run's first call folds at once)
    _responded(calls, 0, 1_000, response, *args, **kwargs)
    calls.record(call_record.from_response(0, 1_000, response, args, kwargs))
    assert 0 < len(calls._pending) < FOLD_CALLS  # still waiting for the fold
    # The hot path writes the fields out itself: they must be the record's, as an exact tuple.
    assert calls._pending[0] == calls._pending[1] == (0, 1_000, None, "gpt-4o-mini", 45, 1)
    assert {type(fields) for fields in calls._pending} == {tuple}
    del response, args, kwargs
    assert [ref() for ref in gone] == [None, None]
    assert calls.dropped == 2
    series = aggregates.snapshot()[KEY]
    assert (series.duration.count, series.input_tokens.sum, series.output_tokens.sum) == (2, 90, 2)


def _policy_calls(exporter: Any) -> LLMCalls:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return LLMCalls(
        provider.get_tracer("test"), [], provider="openai", model="gpt-4o-mini",
        first_n=3, error_limit=2, rate=2.0, capture_content=False,
    )  # fmt: skip


def test_the_hot_path_keeps_the_span_policy_and_the_fold_of_a_full_record() -> None:
    """`timed` checks one deadline instead of the fold's and the span policy's: on the
    same calls it must admit the same spans as `record` and fold as often."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    rng = random.Random(3)
    ends = sorted(rng.randrange(0, 5_000_000_000) for _ in range(3 * FOLD_CALLS))
    response = _Response()
    hot, full = InMemorySpanExporter(), InMemorySpanExporter()
    by_hot, by_full = _policy_calls(hot), _policy_calls(full)
    pending_after = []
    slow: list[int] = []
    due = by_hot._responded_due

    def counted(*args: Any) -> None:
        slow.append(args[1])
        due(*args)

    by_hot._responded_due = counted  # type: ignore[method-assign,assignment]
    for end in ends:
        _responded(by_hot, end - 1_000, end, response, "prompt")
        by_full.record(call_record.from_response(end - 1_000, end, response, ("prompt",), {}))
        pending_after.append((len(by_hot._pending), len(by_full._pending)))
    # The first 3 calls, then one call per half second of their end times, exactly as `record`.
    assert [s.start_time for s in hot.get_finished_spans()] == [
        s.start_time for s in full.get_finished_spans()
    ]
    assert by_hot.emitted == 3 and by_hot.sampled == by_full.sampled >= 5
    # Both fold at the same calls (a full queue or the fold timer; the clock here is fake,
    # so only the queue's length triggers after the first call).
    assert all(hot_left == full_left for hot_left, full_left in pending_after)
    assert max(left for left, _ in pending_after) == FOLD_CALLS - 1
    assert by_hot.dropped == by_full.dropped == len(ends) - 3 - by_hot.sampled
    # ... and every other call took the fast path: only the first 3, the one starting the
    # rate's clock, the sampled ones and the full queues went further.
    assert len(slow) <= 3 + 1 + by_hot.sampled + len(ends) // FOLD_CALLS


def test_a_response_without_the_fields_is_still_counted() -> None:
    aggregates = CallAggregates(instruments.GENAI_DURATION_BUCKETS, instruments.GENAI_TOKEN_BUCKETS)
    calls = _calls(aggregates)
    calls.fold()
    _responded(calls, 0, 2_000, object())
    assert calls._pending[-1] == (0, 2_000, None, None, None, None)
    assert calls.dropped == 1


class _Broken:
    """A response whose fields raise (a client's own response type gone wrong)."""

    @property
    def model(self) -> str:
        raise RuntimeError("no model")

    tokens_in = tokens_out = property(model.fget)


def test_a_response_whose_fields_raise_is_counted_and_returned() -> None:
    aggregates = CallAggregates(instruments.GENAI_DURATION_BUCKETS, instruments.GENAI_TOKEN_BUCKETS)
    calls = _calls(aggregates)
    calls.fold()
    _responded(calls, 0, 3_000, _Broken())  # returns the response (asserted there)
    assert calls._pending[-1] == (0, 3_000, None, None, None, None)
    assert calls.dropped == 1
