"""Issue 14, streams: `execute_stream()`, `execute_stream_async()`, `execute_stream_pipelined()`
are each one user-level call, so one trace and one run, under every entry.

Today (ondine-otel before issue 14): under `instrument` and `with_observer` each 10-row chunk is
its own unconnected trace and its own run (2 traces, `ondine.runs` = 2); under `add_observer`
nothing at all (ondine builds each chunk's pipeline without the user's observers).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest
from ondine.orchestration.execution_context import ExecutionContext

from ondine_otel.telemetry.run import RunTelemetry
from tests.modes import shape
from tests.modes.conftest import SPY, RunReport, Telemetry
from tests.modes.offline import RowFailingClient, client_builder, litellm_builder, reviews

ROWS, CHUNK = 20, 10
METHODS = ("execute_stream", "execute_stream_async", "execute_stream_pipelined")


def _build(telemetry: Telemetry, builder: Any, method: str) -> Any:
    if method == "execute_stream":
        builder = builder.with_streaming(chunk_size=CHUNK)  # ondine requires it for this one
    return telemetry.build(builder.with_observer(SPY, {}))


def stream(pipeline: Any, method: str) -> list[Any]:
    """Run the whole stream the way a user would; ondine's per-chunk results."""
    if method == "execute_stream":
        return list(pipeline.execute_stream(chunk_size=CHUNK))
    if method == "execute_stream_pipelined":
        return list(pipeline.execute_stream_pipelined(chunk_size=CHUNK))

    async def consume() -> list[Any]:
        return [r async for r in pipeline.execute_stream_async(chunk_size=CHUNK)]

    return asyncio.run(consume())


def _ondine_ids(runs: dict[str, RunReport]) -> tuple[set[int], set[int]]:
    return (
        {shape.otel_trace_id(r.trace_id) for r in runs.values()},
        {shape.otel_span_id(r.span_id) for r in runs.values()},
    )


@pytest.mark.parametrize("method", METHODS)
def test_a_stream_is_one_trace_with_ondines_ids(
    method: str, telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    pipeline = _build(telemetry, litellm_builder(reviews(ROWS), tmp_path), method)
    results = stream(pipeline, method)
    assert len(results) == ROWS // CHUNK and len(ondine_runs) == ROWS // CHUNK

    spans = telemetry.spans()
    assert len(shape.trace_ids(spans)) == 1, f"{len(shape.trace_ids(spans))} traces"
    assert len(shape.roots(spans)) == 1, [s.name for s in shape.roots(spans)]
    ondine_traces, ondine_spans = _ondine_ids(ondine_runs)
    assert shape.trace_ids(spans) <= ondine_traces
    assert {s.context.span_id for s in shape.named(spans, shape.RUN)} <= ondine_spans
    shape.assert_nested(spans)
    assert len(shape.chats(spans)) == ROWS


@pytest.mark.parametrize("method", METHODS)
def test_a_stream_counts_as_one_run_with_exact_totals(
    method: str, telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    pipeline = _build(telemetry, litellm_builder(reviews(ROWS), tmp_path), method)
    results = stream(pipeline, method)
    name = telemetry.pipeline_name

    assert telemetry.metric("ondine.runs", pipeline=name, status="success") == 1
    assert telemetry.metric("ondine.runs", pipeline=name, status="error") == 0
    assert telemetry.metric("ondine.rows.processed", pipeline=name) == sum(
        r.metrics.processed_rows for r in results
    )
    assert telemetry.metric("ondine.tokens", pipeline=name) == sum(
        r.costs.total_tokens for r in results
    )
    assert telemetry.metric("ondine.cost.usd", pipeline=name) == pytest.approx(
        float(sum(r.costs.total_cost for r in results))
    )
    assert telemetry.metric("gen_ai.client.operation.duration") == ROWS


@pytest.mark.parametrize("method", METHODS)
def test_failing_rows_of_a_stream_are_error_spans_and_counted(
    method: str, telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    client = RowFailingClient()
    pipeline = _build(telemetry, client_builder(reviews(ROWS, (3, 14)), client, tmp_path), method)
    results = stream(pipeline, method)
    lost = sum(r.metrics.skipped_rows + r.metrics.failed_rows for r in results)
    assert lost == 2  # ondine's own count (error policy: skip)

    spans = telemetry.spans()
    assert len(shape.trace_ids(spans)) == 1
    assert len(shape.failed(shape.chats(spans))) == client.failed_attempts == 2
    name = telemetry.pipeline_name
    assert (
        telemetry.metric("ondine.rows.skipped", pipeline=name)
        + telemetry.metric("ondine.rows.failed", pipeline=name)
        == lost
    )
    assert telemetry.metric("ondine.runs", pipeline=name, status="success") == 1


def _stop_after_first_chunk(pipeline: Any, method: str) -> None:
    """The consumer dies between chunks (Ctrl-C in its loop) and the stream is closed."""
    if method == "execute_stream":
        chunks = pipeline.execute_stream(chunk_size=CHUNK)
        with pytest.raises(KeyboardInterrupt):
            for _ in chunks:
                raise KeyboardInterrupt
        chunks.close()
        return

    async def consume() -> None:
        chunks = pipeline.execute_stream_async(chunk_size=CHUNK)
        try:
            async for _ in chunks:
                raise KeyboardInterrupt
        finally:
            await chunks.aclose()

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(consume())


# execute_stream_pipelined computes every chunk before it returns its iterator: nothing to stop.
@pytest.mark.parametrize("method", ("execute_stream", "execute_stream_async"))
def test_a_stream_stopped_between_chunks_ends_as_an_error_with_what_it_did(
    method: str, telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    pipeline = _build(telemetry, litellm_builder(reviews(3 * CHUNK), tmp_path), method)
    _stop_after_first_chunk(pipeline, method)
    done = sum(r.rows_processed for r in ondine_runs.values() if r.success)
    assert CHUNK <= done < 3 * CHUNK  # ondine finished some chunks, not all

    spans = telemetry.spans()
    assert len(shape.roots(spans)) == 1
    root = shape.roots(spans)[0]
    assert shape.failed([root]) == [root], "a stopped stream must end as ERROR"
    name = telemetry.pipeline_name
    assert telemetry.metric("ondine.runs", pipeline=name, status="error") == 1
    assert telemetry.metric("ondine.runs", pipeline=name, status="success") == 0
    assert telemetry.metric("ondine.rows.processed", pipeline=name) == done


def test_proposed_shape_one_run_span_with_chunk_stages(
    telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    """The proposal in the mode notes (TODO: settle it in the telemetry contract): the stream
    is ONE `ondine.pipeline` run span (the root, ids of the first chunk's context) holding every
    chunk's stage spans, each stage span telling its chunk in `ondine.chunk.index`; the run span
    carries the stream's totals."""
    pipeline = _build(telemetry, litellm_builder(reviews(ROWS), tmp_path), "execute_stream_async")
    results = stream(pipeline, "execute_stream_async")
    spans = telemetry.spans()
    runs = shape.named(spans, shape.RUN)
    assert len(runs) == 1 and shape.roots(spans) == runs
    run = runs[0]
    assert run.attributes is not None
    assert run.attributes["ondine.rows.processed"] == sum(r.metrics.processed_rows for r in results)
    assert run.attributes["ondine.cost.usd"] == pytest.approx(
        float(sum(r.costs.total_cost for r in results))
    )
    llm_stages = shape.named(spans, shape.LLM_STAGE)
    chunks = sorted((s.attributes or {}).get("ondine.chunk.index", -1) for s in llm_stages)
    assert chunks == list(range(ROWS // CHUNK))


def test_a_stream_is_one_active_run_with_progress_across_chunks(
    telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    """Between chunks the stream is still running: one active run whose rows done, cost so far
    and rows expected (ondine knows the frame's length) cover the chunks done so far.
    `execute_stream_async` runs the next chunk only when asked, so the first chunk is exactly
    what is done while the consumer holds it."""
    pipeline = _build(telemetry, litellm_builder(reviews(3 * CHUNK), tmp_path), "stream_async")
    name = telemetry.pipeline_name
    seen: dict[str, float] = {}

    async def consume() -> Any:
        chunks = pipeline.execute_stream_async(chunk_size=CHUNK)
        first = await chunks.__anext__()
        seen["active"] = telemetry.metric("ondine.runs.active", pipeline=name)
        seen["done"] = telemetry.metric("ondine.run.rows.done", pipeline=name)
        seen["expected"] = telemetry.metric("ondine.run.rows.expected", pipeline=name)
        seen["cost"] = telemetry.metric("ondine.run.cost.usd", pipeline=name)
        async for _ in chunks:
            pass
        return first

    first = asyncio.run(consume())
    assert seen["active"] == 1
    assert seen["done"] == first.metrics.processed_rows == CHUNK
    assert seen["expected"] == 3 * CHUNK
    assert seen["cost"] == pytest.approx(float(first.costs.total_cost))
    assert telemetry.metric("ondine.runs.active", pipeline=name) == 0


def test_a_stream_that_ondine_stops_on_its_budget_ends_as_an_error(
    telemetry: Telemetry, ondine_runs: dict[str, RunReport], tmp_path: Path
) -> None:
    """ondine checks the stream's budget across chunks after each chunk and raises from the
    generator: the stream's run ends ERROR, having done the chunks before."""
    builder = litellm_builder(reviews(3 * CHUNK), tmp_path)
    pipeline = _build(telemetry, builder.with_max_budget(0.0002), "stream_async")
    done: list[Any] = []

    async def consume() -> None:
        async for chunk in pipeline.execute_stream_async(chunk_size=CHUNK):
            done.append(chunk)

    with pytest.raises(Exception, match=r"(?i)budget"):
        asyncio.run(consume())
    assert len(done) == 2  # 2 chunks cost 0.00027 > 0.0002: stopped before the third

    spans = telemetry.spans()
    assert len(shape.trace_ids(spans)) == 1
    [root] = shape.roots(spans)
    assert shape.failed([root]) == [root]
    name = telemetry.pipeline_name
    assert telemetry.metric("ondine.runs", pipeline=name, status="error") == 1
    assert telemetry.metric("ondine.runs", pipeline=name, status="success") == 0
    assert telemetry.metric("ondine.rows.processed", pipeline=name) == 2 * CHUNK


def _held_by_ondine_otel(obj: object, running: AbstractSet[int] = frozenset()) -> list[str]:
    """The ondine-otel objects that refer to `obj`, directly or through their `__dict__`,
    but the parts (ids in `running`) of chunks still running."""
    holders = []
    for referrer in gc.get_referrers(obj):
        owners = [referrer, *(gc.get_referrers(referrer) if isinstance(referrer, dict) else [])]
        holders += [
            type(owner).__qualname__
            for owner in owners
            if type(owner).__module__.startswith("ondine_otel") and id(owner) not in running
        ]
    return holders


def test_a_stream_keeps_no_chunks_context_once_the_chunk_is_done(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    """A chunk's ExecutionContext holds every response of its rows: kept for the rest of a
    10M-row stream, it costs memory and makes every full collection walk them."""
    builder = litellm_builder(reviews(CHUNK * 4), tmp_path).with_streaming(chunk_size=CHUNK)
    earlier = {id(o) for o in gc.get_objects() if isinstance(o, ExecutionContext)}
    chunks = telemetry.build(builder).execute_stream(chunk_size=CHUNK)
    next(chunks), next(chunks)  # two chunks done, the stream (and its run) still going
    gc.collect()
    contexts = [
        o for o in gc.get_objects() if isinstance(o, ExecutionContext) and id(o) not in earlier
    ]  # this stream's (other tests' runs may legitimately hold theirs)
    assert contexts, "ondine keeps no context alive between chunks: nothing to check"
    # ondine runs a stream's chunks on a thread of its own, ahead of the consumer: a chunk may
    # be running now, and its part holds its context until the chunk ends (as it should).
    running = {
        id(part)
        for run in gc.get_objects()
        if isinstance(run, RunTelemetry)
        for part in list(run._parts.values())
    }
    held = {id(context): _held_by_ondine_otel(context, running) for context in contexts}
    assert not any(held.values()), held
    assert sum(chunk.metrics.processed_rows for chunk in chunks) == CHUNK * 2
