"""RunTelemetry: everything about one ondine run, from its first hook to its single end.

One object owns the run span, the stage spans, the context tokens that make them current, the
baselines that turn ondine's cumulative totals into what this run added, and the resume link.
A run is made of parts, one per ondine `execute()` inside it: a plain run has one; a stream
(`execute_stream*`) is one run whose chunks join it as parts, each with its own ondine context,
so its totals are the sum of its chunks and its span tree holds every chunk's stages. Callers
(observer hooks, checkpoint wrappers, the execute wrapper) stay thin and never need to agree on
ordering: `finish` is idempotent and unwinds whatever is still open.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags, Tracer

from ondine_otel.config import DEFAULTS
from ondine_otel.telemetry import ids, semconv, snapshot
from ondine_otel.telemetry.guard import quietly, report
from ondine_otel.telemetry.llm_calls import LLMCalls
from ondine_otel.telemetry.redaction import redact
from ondine_otel.telemetry.snapshot import RunSnapshot
from ondine_otel.telemetry.tracing import (
    parent_context,
    record_error,
    span_attributes,
    start_span_with_ids,
)

#: OTel context key under which the active RunTelemetry travels with its spans, so that code
#: running inside the run (ondine's per-row asyncio tasks) can find it.
RUN_CONTEXT_KEY = otel_context.create_key("ondine_otel.telemetry.run")


def current_run() -> RunTelemetry | None:
    """The run whose span (or one of its stage spans) is current here, if any."""
    run = otel_context.get_value(RUN_CONTEXT_KEY)
    return run if isinstance(run, RunTelemetry) else None


@dataclass(frozen=True)
class RestoredCheckpoint:
    """What a resumed run learns from the checkpoint it was restored from."""

    traceparent: ids.TraceParent | None
    attributes: dict[str, Any]


@dataclass(frozen=True)
class RunDelta:
    """What one run added: the unit of exact accounting for the metrics."""

    rows_processed: int = 0
    rows_failed: int = 0
    rows_skipped: int = 0
    cost_usd: float = 0.0
    tokens_input: int = 0
    tokens_output: int = 0


class RunListener(Protocol):
    """What metrics (or any other sink) hear about a run, beyond what spans record.

    A listener may also offer `call_sinks` (see `LLMCalls`): how it counts each LLM call.
    """

    def run_started(self, run: RunTelemetry) -> None: ...

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None: ...

    def stage_finished(
        self, run: RunTelemetry, stage: str, status: str, seconds: float
    ) -> None: ...

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None: ...


@dataclass
class _Stage:
    name: str
    span: Span
    token: object
    started: float
    cost_at_start: float
    tokens_at_start: int


@dataclass
class _Part:
    """One ondine execute() inside the run, with its own context (a stream's chunk)."""

    context: Any
    baseline: RunSnapshot
    owner: object
    chunk: int | None
    row_offset: int
    thread: int
    token: object | None = None
    stage: _Stage | None = None


#: Failed-row events one run records at most (ondine itself keeps 1000 per context).
ROW_EVENT_LIMIT = 100
_ROW_MESSAGE_LIMIT = 200


class RunTelemetry:
    """The telemetry state of one pipeline run, keyed by ondine's `session_id`(s)."""

    def __init__(
        self,
        context: Any,
        tracer: Tracer,
        *,
        owner: object,
        pipeline_name: str = DEFAULTS["pipeline_name"],
        provider: str | None = None,
        model: str | None = None,
        progress_interval: float = DEFAULTS["progress_interval"],
        llm_span_limit: int = DEFAULTS["llm_span_limit"],
        llm_error_span_limit: int = DEFAULTS["llm_error_span_limit"],
        llm_span_rate: float = DEFAULTS["llm_span_rate"],
        capture_content: bool = DEFAULTS["capture_content"],
        listeners: Sequence[RunListener] = (),
        restored: RestoredCheckpoint | None = None,
        budget_usd: float | None = None,
        parent: Context | None = None,
        chunk: int | None = None,
        expected_rows: int | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """`chunk`: the first part is chunk 0 of a stream (later chunks `join`); then the run
        ends only by `finish`, and `expected_rows` (if known) is its rows total. `parent`:
        where the run span hangs (default: the caller's span, else TRACEPARENT)."""
        #: ondine's context, for its stats at the end: a plain run's one. A stream's chunks are
        #: parts, each dropped with its context when it ends, and the run keeps none (a chunk's
        #: context holds every response of its rows).
        self._context = None if chunk is not None else context
        self.owner = owner
        self.session_id = str(getattr(context, "session_id", ""))
        self.pipeline_name = pipeline_name
        self.provider = provider
        self.model = model
        self.restored = restored
        self.streaming = chunk is not None
        self.expected_rows = expected_rows
        #: Told of the run's start, stages, checkpoints and end, in order (metrics first).
        self.listeners = tuple(listeners)
        #: Set by the run's metrics, under their lock, once its final numbers moved into their
        #: totals of finished runs: from then on a collection must not count it as active.
        self.counted = False
        #: The labels its metrics fixed when it started (a run never splits across series).
        self.labels: object | None = None
        self.start_wall = time.time()
        self._start_mono = time.monotonic()
        self.budget_usd = budget_usd
        self.tracer = tracer
        self.capture_content = capture_content
        self.llm = LLMCalls(
            tracer,
            [sink for each in self.listeners for sink in getattr(each, "call_sinks", ())],
            provider=provider,
            model=model,
            first_n=llm_span_limit,
            error_limit=llm_error_span_limit,
            rate=llm_span_rate,
            capture_content=capture_content,
        )
        self._progress_interval = progress_interval
        self._last_progress = -float("inf")
        self._stage_count = 0
        self._lock = threading.RLock()
        self._finished = False
        self._cleanups: dict[object, Callable[[], None]] = {}
        self._parts: dict[int, _Part] = {}
        # Parts that ended: their last reading and baseline, summed (their contexts dropped).
        self._ended_now = snapshot.ZERO
        self._ended_base = snapshot.ZERO
        self._row_events = 0
        self.row_events_dropped = 0
        self._stage_ends: list[tuple[str, str, float]] = []
        #: Set when the run was interrupted where no execute() wrapper can end it: the
        #: checkpoint ondine saves next ends it instead (after recording its event).
        self.end_after_checkpoint: BaseException | None = None
        first = self._new_part(context, owner, chunk, 0)
        self.span = self._start_run_span(context, parent, attributes or {})
        self._enter(first)

    # --- start -------------------------------------------------------------------------
    def _start_run_span(self, context: Any, parent: Context | None, extra: dict[str, Any]) -> Span:
        original_trace_id = getattr(context, "trace_id", None)
        mapped = ids.map_ids(original_trace_id, getattr(context, "span_id", None))
        parent = parent_context() if parent is None else parent
        parent_span = trace.get_current_span(parent).get_span_context()
        links: list[Link] = []
        if self.restored is not None and self.restored.traceparent is not None:
            crashed = self.restored.traceparent
            links.append(
                Link(
                    SpanContext(
                        crashed.trace_id,
                        crashed.span_id,
                        is_remote=True,
                        trace_flags=TraceFlags(TraceFlags.SAMPLED if crashed.sampled else 0),
                    ),
                )
            )
        span = start_span_with_ids(
            self.tracer,
            semconv.SPAN_RUN,
            trace_id=mapped.trace_id,
            span_id=mapped.span_id,
            parent=parent,
            links=links,
            attributes=span_attributes(
                {
                    semconv.ATTR_SESSION_ID: self.session_id,
                    semconv.ATTR_PIPELINE_ID: _text(getattr(context, "pipeline_id", None)),
                    semconv.ATTR_PIPELINE_NAME: self.pipeline_name,
                    semconv.ATTR_TRACE_ID: _text(original_trace_id) or "",
                    semconv.ATTR_ROWS_TOTAL: self.snapshot().rows_total,
                    semconv.ATTR_RESUMED: self._resumed(context),
                    semconv.ATTR_LLM_MODEL: self.model,
                    semconv.ATTR_LLM_PROVIDER: self.provider,
                    semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
                    **extra,
                }
            ),
        )
        self.span = span
        self.trace_id = span.get_span_context().trace_id
        if parent_span.is_valid:
            self._write_trace_id(context)
        if self.restored is not None:
            span.add_event(semconv.EVENT_CHECKPOINT_RESTORED, self.restored.attributes)
        return span

    def _write_trace_id(self, context: Any) -> None:
        """The run's trace id into an ondine context, so ondine's own logs and events name the
        trace the spans are in (a joined outer trace, a stream's later chunks)."""
        if not self.span.get_span_context().is_valid:
            return
        try:
            context.trace_id = ids.uuid_from_trace_id(self.trace_id)
        except Exception as error:  # noqa: BLE001
            report("writing trace_id back to the ondine context", error)

    def _resumed(self, context: Any) -> bool:
        data = getattr(context, "intermediate_data", None)
        flagged = isinstance(data, dict) and bool(data.get("resumed_from_checkpoint"))
        return self.restored is not None or flagged

    # --- parts ---------------------------------------------------------------------------
    def _new_part(self, context: Any, owner: object, chunk: int | None, offset: int) -> _Part:
        part = _Part(context, snapshot.take(context), owner, chunk, offset, threading.get_ident())
        with self._lock:
            self._parts[id(context)] = part
        return part

    def _enter(self, part: _Part) -> None:
        """Make the run current on the part's thread while the part runs."""
        current = otel_context.set_value(
            RUN_CONTEXT_KEY, self, trace.set_span_in_context(self.span)
        )
        part.token = otel_context.attach(current)

    def join(self, context: Any, owner: object, chunk: int, row_offset: int) -> None:
        """A later chunk of a stream joins the run (on the thread that runs the chunk)."""
        with self._lock:
            if self._finished:
                return
        self._write_trace_id(context)
        self._enter(self._new_part(context, owner, chunk, row_offset))

    def owns(self, context: Any, owner: object) -> bool:
        """Whether `owner` (an observer) drives the part of `context`."""
        part = self._parts.get(id(context))
        return part is not None and part.owner is owner

    def end_part(self, context: Any, error: BaseException | None = None) -> bool:
        """The part of `context` ended: a plain run ends with it (True); a stream goes on."""
        with self._lock:
            part = self._parts.get(id(context))
            if part is None:
                return False
            ends_run = not self.streaming
            if not ends_run:
                self._close_part(part, error)
        self._send_stage_ends()
        return self.finish(error) if ends_run else False

    def _close_part(self, part: _Part, error: BaseException | None) -> None:
        """Under the lock: end the part's stage, fold its numbers in, restore its thread."""
        if part.stage is not None:
            self._end_stage(part, error=error, status="error" if error else "unknown")
        self._record_row_errors(part)
        final = snapshot.take(part.context)
        self._ended_now = snapshot.plus(self._ended_now, final)
        self._ended_base = snapshot.plus(self._ended_base, part.baseline)
        del self._parts[id(part.context)]
        if part.token is not None and part.thread == threading.get_ident():
            _detach(part.token)
            part.token = None

    # --- what this run added -------------------------------------------------------------
    def readings(self) -> tuple[RunSnapshot, RunSnapshot]:
        """(now, baseline): the run's cumulative totals as ondine counts them (restored part
        included) and what it started from, over the same parts."""
        with self._lock:
            now, base = self._ended_now, self._ended_base
            for part in self._parts.values():
                now = snapshot.plus(now, snapshot.take(part.context))
                base = snapshot.plus(base, part.baseline)
        if self.expected_rows is not None:
            now = dataclasses.replace(now, rows_total=self.expected_rows)
        return now, base

    def snapshot(self) -> snapshot.RunSnapshot:
        """The run's cumulative totals now."""
        return self.readings()[0]

    def added(self, readings: tuple[RunSnapshot, RunSnapshot] | None = None
              ) -> RunDelta:  # fmt: skip
        """What this run added to ondine's cumulative totals (`readings`: just taken).

        Input and output come straight from ondine's split counters, each of which only grows,
        so neither series can dip when a reader collects between ondine's updates of the total
        and of the split. Without a split, all tokens count as input.
        """
        now, base = self.readings() if readings is None else readings
        total = max(now.tokens_total - base.tokens_total, 0)
        if now.tokens_input is not None and now.tokens_output is not None:
            tokens_input = max(now.tokens_input - (base.tokens_input or 0), 0)
            tokens_output = max(now.tokens_output - (base.tokens_output or 0), 0)
        else:
            tokens_input, tokens_output = total, 0
        return RunDelta(
            rows_processed=max(now.rows_processed - base.rows_processed, 0),
            rows_failed=max(now.rows_failed - base.rows_failed, 0),
            rows_skipped=max(now.rows_skipped - base.rows_skipped, 0),
            cost_usd=max(now.cost_usd - base.cost_usd, 0.0),
            tokens_input=tokens_input,
            tokens_output=tokens_output,
        )

    def traceparent(self) -> str | None:
        """The run span's W3C traceparent, stored into checkpoints for the resume link."""
        span_context = self.span.get_span_context()
        if not span_context.is_valid:
            return None
        return ids.format_traceparent(
            span_context.trace_id, span_context.span_id, span_context.trace_flags.sampled
        )

    # --- stages ----------------------------------------------------------------------------
    def stage_started(self, context: Any, stage_name: str) -> None:
        """Open a stage span under the run span and make it current while the stage runs.

        Being current is what nests the LLM call spans (emitted inside ondine's asyncio tasks on
        this thread) under the LLMInvocation stage.
        """
        with self._lock:
            part = self._parts.get(id(context))
            if self._finished or part is None:
                return
            if part.stage is not None:  # a stage that never reported its end
                self._end_stage(part, error=None, status="unknown")
            now = snapshot.take(context)
            span = self.tracer.start_span(
                f"{semconv.SPAN_STAGE_PREFIX} {stage_name}",
                context=trace.set_span_in_context(self.span),
                attributes=span_attributes(
                    {
                        semconv.ATTR_STAGE_NAME: stage_name,
                        semconv.ATTR_STAGE_INDEX: self._stage_count,
                        # Stage spans are exported as they end, long before a multi-hour
                        # run's span: this finds an active run's trace from its run_id.
                        semconv.ATTR_SESSION_ID: self.session_id,
                        semconv.ATTR_CHUNK_INDEX: part.chunk,
                        semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
                    }
                ),
            )
            self._stage_count += 1
            token = otel_context.attach(trace.set_span_in_context(span))
            part.stage = _Stage(
                stage_name, span, token, time.monotonic(), now.cost_usd, now.tokens_total
            )
        self._send_stage_ends()

    def stage_ended(
        self, context: Any, stage_name: str, error: BaseException | None = None
    ) -> None:
        with self._lock:
            part = self._parts.get(id(context))
            if part is None or part.stage is None or part.stage.name != stage_name:
                return
            self._end_stage(part, error=error, status="error" if error else "success")
        self._send_stage_ends()

    def _end_stage(self, part: _Part, error: BaseException | None, status: str) -> None:
        stage, part.stage = part.stage, None
        if stage is None:
            return
        now = snapshot.take(part.context)
        stage.span.set_attributes(
            {
                semconv.ATTR_ROWS_PROCESSED: now.rows_processed,
                semconv.ATTR_STAGE_COST_USD: max(now.cost_usd - stage.cost_at_start, 0.0),
                semconv.ATTR_STAGE_TOKENS: max(now.tokens_total - stage.tokens_at_start, 0),
            }
        )
        if error is not None:
            record_error(stage.span, error)
        if part.thread == threading.get_ident():
            _detach(stage.token)
        _end(stage.span)
        # Told once the run's lock is released (a listener may take locks of its own).
        self._stage_ends.append((stage.name, status, time.monotonic() - stage.started))

    def _send_stage_ends(self) -> None:
        with self._lock:
            ends, self._stage_ends = self._stage_ends, []
        for name, status, seconds in ends:
            self._tell("stage_finished", name, status, seconds)

    def add_cleanup(self, key: object, action: Callable[[], None]) -> None:
        """Something to undo when the stage that did it ends, or at the latest with the run."""
        with self._lock:
            self._cleanups[key] = action

    def run_cleanup(self, key: object) -> None:
        with self._lock:
            action = self._cleanups.pop(key, None)
        if action is not None:
            quietly("undoing a stage's instrumentation", action)

    def current_span(self, context: Any) -> Span:
        part = self._parts.get(id(context))
        stage = part.stage if part is not None else None
        return stage.span if stage is not None else self.span

    # --- events ----------------------------------------------------------------------------
    def progress(self, context: Any) -> None:
        """An `ondine.progress` event on the current stage span, at most once per interval."""
        now_mono = time.monotonic()
        if now_mono - self._last_progress < self._progress_interval:
            return
        self._last_progress = now_mono
        now = self.snapshot()
        percent = 100.0 * now.rows_processed / now.rows_total if now.rows_total else 0.0
        self.current_span(context).add_event(
            semconv.EVENT_PROGRESS,
            {
                semconv.ATTR_ROWS_PROCESSED: now.rows_processed,
                semconv.ATTR_ROWS_TOTAL: now.rows_total,
                semconv.ATTR_PROGRESS_PERCENT: round(percent, 3),
                semconv.ATTR_COST_USD: now.cost_usd,
            },
        )

    def checkpoint(self, context: Any, saved: bool, size_bytes: int | None) -> None:
        """An `ondine.checkpoint` event on the run span for one StateManager save."""
        self.span.add_event(
            semconv.EVENT_CHECKPOINT,
            span_attributes(
                {
                    **checkpoint_attributes(context),
                    # ondine never advances current_stage_index; ours is the stage that saved.
                    semconv.ATTR_CHECKPOINT_STAGE_INDEX: max(self._stage_count - 1, 0),
                    semconv.ATTR_CHECKPOINT_SAVED: saved,
                    semconv.ATTR_CHECKPOINT_BYTES: size_bytes,
                }
            ),
        )
        self._tell("checkpoint_saved", saved)

    def _record_row_errors(self, part: _Part) -> None:
        """`ondine.row.failed` events for the part's failed rows (bounded; a row's content
        never, and a parse failure's message, which quotes the model's output, only with
        content capture on)."""
        errors = getattr(part.context, "row_errors", None)
        if not isinstance(errors, list):
            return
        for error in list(errors):
            if self._row_events >= ROW_EVENT_LIMIT:
                self.row_events_dropped += 1
                continue
            self._row_events += 1
            reason = str(getattr(error, "error_type", "") or "unknown")
            message = str(getattr(error, "message", "") or "")
            if reason == "parse_failure" and not self.capture_content:
                message = "withheld: it quotes the model's output (content capture is off)"
            index = getattr(error, "row_index", None)
            self.span.add_event(
                semconv.EVENT_ROW_FAILED,
                span_attributes(
                    {
                        semconv.ATTR_ROW_INDEX: (
                            None if index is None else int(index) + part.row_offset
                        ),
                        semconv.ATTR_ROW_REASON: reason,
                        semconv.ATTR_STAGE_NAME: _text(getattr(error, "stage", None)),
                        semconv.ATTR_ROW_ERROR_MESSAGE: redact(message)[:_ROW_MESSAGE_LIMIT],
                        semconv.ATTR_CHUNK_INDEX: part.chunk,
                    }
                ),
            )

    # --- end -------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    def finish(self, error: BaseException | None = None) -> bool:
        """End the run span once, with final totals; later calls do nothing and return False."""
        with self._lock:
            if self._finished:
                return False
            self._finished = True
            cleanups, self._cleanups = list(self._cleanups.values()), {}
            for part in list(self._parts.values()):
                self._close_part(part, error)
        self._send_stage_ends()
        for action in cleanups:
            quietly("undoing a stage's instrumentation", action)
        final = self.snapshot()
        duration = time.monotonic() - self._start_mono
        stats = None if self._context is None else _stats(self._context)
        rows_per_second = getattr(stats, "rows_per_second", None)
        if rows_per_second is None:
            rows_per_second = final.rows_processed / duration if duration > 0 else 0.0
        self.span.set_attributes(
            span_attributes(
                {
                    semconv.ATTR_ROWS_TOTAL: final.rows_total,
                    semconv.ATTR_ROWS_PROCESSED: final.rows_processed,
                    semconv.ATTR_ROWS_FAILED: final.rows_failed,
                    semconv.ATTR_ROWS_SKIPPED: final.rows_skipped,
                    semconv.ATTR_COST_USD: final.cost_usd,
                    semconv.ATTR_TOKENS_INPUT: final.tokens_input,
                    semconv.ATTR_TOKENS_OUTPUT: final.tokens_output,
                    semconv.ATTR_TOKENS_TOTAL: final.tokens_total,
                    semconv.ATTR_ROWS_PER_SECOND: float(rows_per_second),
                    semconv.ATTR_LLM_SPANS_DROPPED: self.llm.dropped,
                    semconv.ATTR_ROW_EVENTS_DROPPED: self.row_events_dropped or None,
                }
            )
        )
        if error is not None:  # success leaves the status UNSET (semantic conventions)
            record_error(self.span, error)
        _end(self.span)
        self._tell("run_finished", "error" if error else "success", duration)
        return True

    def announce(self) -> None:
        """Tell the listeners the run started (once it is in the registry)."""
        self._tell("run_started")

    def _tell(self, event: str, *args: Any) -> None:
        """Call `event` on every listener in order; one failing does not starve the others."""
        for listener in self.listeners:
            try:
                getattr(listener, event)(self, *args)
            except Exception as error:  # noqa: BLE001
                report(f"a run listener ({event})", error)


def checkpoint_attributes(context: Any) -> dict[str, Any]:
    """The `ondine.checkpoint.*` attributes describing a context at checkpoint time."""
    now = snapshot.take(context)
    return {
        semconv.ATTR_CHECKPOINT_ROW: int(getattr(context, "last_processed_row", -1) or 0),
        semconv.ATTR_CHECKPOINT_STAGE_INDEX: int(getattr(context, "current_stage_index", 0) or 0),
        semconv.ATTR_CHECKPOINT_COST_USD: now.cost_usd,
        semconv.ATTR_CHECKPOINT_TOKENS: now.tokens_total,
        semconv.ATTR_CHECKPOINT_ROWS_FAILED: now.rows_failed,
        semconv.ATTR_CHECKPOINT_ROWS_SKIPPED: now.rows_skipped,
    }


def _stats(context: Any) -> Any:
    get_stats = getattr(context, "get_stats", None)
    if not callable(get_stats):
        return None
    try:
        return get_stats()
    except Exception:  # noqa: BLE001
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _end(span: Span) -> None:
    """End a span; a failing span processor must not skip the rest of our bookkeeping."""
    try:
        span.end()
    except Exception as error:  # noqa: BLE001
        report("ending a span (a span processor raised)", error)


def _detach(token: object) -> None:
    """Detach a context token; a token from another thread/context must not raise into ondine."""
    try:
        otel_context.detach(token)  # type: ignore[arg-type]
    except Exception as error:  # noqa: BLE001
        report("restoring the OpenTelemetry context", error)
