"""Groups of runs that one user-level call makes: a stream, a composed call.

`Stream`: one `execute_stream*()` call. ondine runs each chunk as a pipeline of its own with a
context of its own; the stream is ONE run (`RunTelemetry`) that the first chunk starts, with
that chunk's ids, and that every later chunk joins as a part. It ends when the call does: the
iterator exhausted (success), an error out of it, or the consumer closing it early (ERROR).

`Composition`: one `PipelineComposer.execute()` call. Each column is a real run of a real
pipeline; they hang under one root span (`ondine.composition`) in the trace of the first
column's context, and the root carries the call's totals (ondine's composer result reports no
tokens).
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Tracer

from ondine_otel.telemetry import ids, semconv, snapshot
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RunTelemetry
from ondine_otel.telemetry.tracing import (
    parent_context,
    record_error,
    span_attributes,
    start_span_with_ids,
)


class StreamClosed(Exception):
    """The consumer stopped a stream before its end (break, Ctrl-C in its loop, close())."""


class Stream:
    """One `execute_stream*()` call (see the module docstring)."""

    def __init__(
        self,
        method: str,
        chunk_size: int | None,
        expected_rows: int | None,
        caller: Context,
        observer: Any = None,
    ) -> None:
        """`caller`: the OpenTelemetry context of the call (the chunks run on other threads);
        `observer`: the pipeline's own observer, if it has one (ondine does not copy a
        pipeline's observers into its chunks)."""
        self.method = method
        self.chunk_size = chunk_size
        self.expected_rows = expected_rows
        self.caller = caller
        self.observer = observer
        self.run: RunTelemetry | None = None
        self.chunks = 0
        self.lock = threading.Lock()

    def row_offset(self, chunk: int) -> int:
        """Where chunk `chunk` starts in the input (ondine numbers a chunk's rows from 0)."""
        return chunk * (self.chunk_size or 0)

    def end(self, registry: RunRegistry, error: BaseException | None) -> None:
        """The call is over: end its run (if a chunk ever started one)."""
        with self.lock:
            run = self.run
        if run is None:
            return
        run.span.set_attribute(semconv.ATTR_STREAM_CHUNKS, self.chunks)
        registry.end(run, error)


class Composition:
    """One `PipelineComposer.execute()` call (see the module docstring)."""

    def __init__(self, columns: dict[int, str]) -> None:
        """`columns`: each column pipeline's name, by the pipeline object's id."""
        self.columns = columns
        self.span: Span | None = None
        self.runs: list[RunTelemetry] = []

    def parent_for(self, context: Any, tracer: Tracer) -> Context:
        """Where a column's run hangs: the root, which the first column starts in its own
        trace (or in the caller's, when the call runs inside a span or under TRACEPARENT)."""
        if self.span is None:
            mapped = ids.map_ids(getattr(context, "trace_id", None), None)
            self.span = start_span_with_ids(
                tracer,
                semconv.SPAN_COMPOSITION,
                trace_id=mapped.trace_id,
                span_id=ids.random_span_id(),
                parent=parent_context(),
                attributes={
                    semconv.ATTR_COMPOSITION_COLUMNS: list(self.columns.values()),
                    semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
                },
            )
        return trace.set_span_in_context(self.span)

    def end(self, error: BaseException | None) -> None:
        """The call is over: the root gets the call's totals and ends."""
        span = self.span
        if span is None:
            return
        total = snapshot.ZERO
        for run in self.runs:
            total = snapshot.plus(total, run.snapshot())
        span.set_attributes(
            span_attributes(
                {
                    semconv.ATTR_ROWS_PROCESSED: total.rows_processed,
                    semconv.ATTR_ROWS_FAILED: total.rows_failed,
                    semconv.ATTR_ROWS_SKIPPED: total.rows_skipped,
                    semconv.ATTR_COST_USD: total.cost_usd,
                    semconv.ATTR_TOKENS_INPUT: total.tokens_input,
                    semconv.ATTR_TOKENS_OUTPUT: total.tokens_output,
                    semconv.ATTR_TOKENS_TOTAL: total.tokens_total,
                }
            )
        )
        if error is not None:
            record_error(span, error)
        try:
            span.end()
        except Exception as failure:  # noqa: BLE001
            report("ending a span (a span processor raised)", failure)
