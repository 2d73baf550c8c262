"""RunTelemetry: everything about one ondine run, from its first hook to its single end.

One object owns the run span, the current stage span, the context tokens that make them
current, the baselines that turn ondine's cumulative totals into what this run added, and the
resume link. Callers (observer hooks, checkpoint wrappers, the execute wrapper) stay thin and
never need to agree on ordering: `finish` is idempotent and unwinds whatever is still open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags, Tracer

from ondine_otel.config import DEFAULTS
from ondine_otel.telemetry import ids, semconv, snapshot
from ondine_otel.telemetry.guard import quietly, report
from ondine_otel.telemetry.llm_calls import LLMCalls
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


class RunTelemetry:
    """The telemetry state of one pipeline run, keyed by ondine's `session_id`."""

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
    ) -> None:
        self.context = context
        self.owner = owner
        self.session_id = str(getattr(context, "session_id", ""))
        self.pipeline_name = pipeline_name
        self.provider = provider
        self.model = model
        self.restored = restored
        #: Told of the run's start, stages, checkpoints and end, in order (metrics first).
        self.listeners = tuple(listeners)
        #: Set by the run's metrics, under their lock, once its final numbers moved into their
        #: totals of finished runs: from then on a collection must not count it as active.
        self.counted = False
        #: The labels its metrics fixed when it started (a run never splits across series).
        self.labels: object | None = None
        self.start_wall = time.time()
        self._start_mono = time.monotonic()
        # What ondine carried in from a checkpoint is not this run's work.
        self.baseline = snapshot.take(context)
        self.budget_usd = budget_usd
        self.tracer = tracer
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
        self._stage: _Stage | None = None
        self._stage_count = 0
        self._run_token: object | None = None
        self._lock = threading.Lock()
        self._finished = False
        self._cleanups: dict[object, Callable[[], None]] = {}
        #: Set when the run was interrupted where no execute() wrapper can end it: the
        #: checkpoint ondine saves next ends it instead (after recording its event).
        self.end_after_checkpoint: BaseException | None = None
        self.span = self._start_run_span()

    # --- start -------------------------------------------------------------------------
    def _start_run_span(self) -> Span:
        original_trace_id = getattr(self.context, "trace_id", None)
        mapped = ids.map_ids(original_trace_id, getattr(self.context, "span_id", None))
        parent = parent_context()
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
                    semconv.ATTR_PIPELINE_ID: _text(getattr(self.context, "pipeline_id", None)),
                    semconv.ATTR_PIPELINE_NAME: self.pipeline_name,
                    semconv.ATTR_TRACE_ID: _text(original_trace_id) or "",
                    semconv.ATTR_ROWS_TOTAL: self.baseline.rows_total,
                    semconv.ATTR_RESUMED: self.resumed,
                    semconv.ATTR_LLM_MODEL: self.model,
                    semconv.ATTR_LLM_PROVIDER: self.provider,
                    semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
                }
            ),
        )
        effective = span.get_span_context()
        if parent_span.is_valid and effective.is_valid:
            # Joined an outer trace: let ondine's own logs and events name the same trace.
            try:
                self.context.trace_id = ids.uuid_from_trace_id(effective.trace_id)
            except Exception as error:  # noqa: BLE001
                report("writing trace_id back to the ondine context", error)
        if self.restored is not None:
            span.add_event(semconv.EVENT_CHECKPOINT_RESTORED, self.restored.attributes)
        current = otel_context.set_value(RUN_CONTEXT_KEY, self, trace.set_span_in_context(span))
        self._run_token = otel_context.attach(current)
        return span

    @property
    def resumed(self) -> bool:
        data = getattr(self.context, "intermediate_data", None)
        flagged = isinstance(data, dict) and bool(data.get("resumed_from_checkpoint"))
        return self.restored is not None or flagged

    # --- what this run added -------------------------------------------------------------
    def added(self, now: snapshot.RunSnapshot | None = None) -> RunDelta:
        """What this run added to ondine's cumulative totals (`now`: a reading just taken).

        Input and output come straight from ondine's split counters, each of which only grows,
        so neither series can dip when a reader collects between ondine's updates of the total
        and of the split. Without a split, all tokens count as input.
        """
        now = self.snapshot() if now is None else now
        base = self.baseline
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

    def snapshot(self) -> snapshot.RunSnapshot:
        """The run's cumulative totals now (as ondine counts them, restored part included)."""
        return snapshot.take(self.context)

    def traceparent(self) -> str | None:
        """The run span's W3C traceparent, stored into checkpoints for the resume link."""
        span_context = self.span.get_span_context()
        if not span_context.is_valid:
            return None
        return ids.format_traceparent(
            span_context.trace_id, span_context.span_id, span_context.trace_flags.sampled
        )

    # --- stages ----------------------------------------------------------------------------
    def stage_started(self, stage_name: str) -> None:
        """Open a stage span under the run span and make it current while the stage runs.

        Being current is what nests the LLM call spans (emitted inside ondine's asyncio tasks on
        this thread) under the LLMInvocation stage.
        """
        with self._lock:
            if self._finished:
                return
            if self._stage is not None:  # a stage that never reported its end
                self._end_stage(self._stage, error=None, status="unknown")
            now = snapshot.take(self.context)
            span = self.tracer.start_span(
                f"{semconv.SPAN_STAGE_PREFIX} {stage_name}",
                context=trace.set_span_in_context(self.span),
                attributes={
                    semconv.ATTR_STAGE_NAME: stage_name,
                    semconv.ATTR_STAGE_INDEX: self._stage_count,
                    semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
                    # Stage spans are exported as they end, long before a multi-hour run's
                    # span: this finds an active run's trace from its run_id.
                    semconv.ATTR_SESSION_ID: self.session_id,
                },
            )
            self._stage_count += 1
            token = otel_context.attach(trace.set_span_in_context(span))
            self._stage = _Stage(
                stage_name, span, token, time.monotonic(), now.cost_usd, now.tokens_total
            )

    def stage_ended(self, stage_name: str, error: BaseException | None = None) -> None:
        with self._lock:
            stage = self._stage
            if stage is None or stage.name != stage_name:
                return
            self._end_stage(stage, error=error, status="error" if error else "success")

    def _end_stage(self, stage: _Stage, error: BaseException | None, status: str) -> None:
        self._stage = None
        now = snapshot.take(self.context)
        stage.span.set_attributes(
            {
                semconv.ATTR_ROWS_PROCESSED: now.rows_processed,
                semconv.ATTR_STAGE_COST_USD: max(now.cost_usd - stage.cost_at_start, 0.0),
                semconv.ATTR_STAGE_TOKENS: max(now.tokens_total - stage.tokens_at_start, 0),
            }
        )
        if error is not None:
            record_error(stage.span, error)
        _detach(stage.token)
        _end(stage.span)
        self._tell("stage_finished", stage.name, status, time.monotonic() - stage.started)

    def add_cleanup(self, key: object, action: Callable[[], None]) -> None:
        """Something to undo when the stage that did it ends, or at the latest with the run."""
        with self._lock:
            self._cleanups[key] = action

    def run_cleanup(self, key: object) -> None:
        with self._lock:
            action = self._cleanups.pop(key, None)
        if action is not None:
            quietly("undoing a stage's instrumentation", action)

    @property
    def current_span(self) -> Span:
        stage = self._stage
        return stage.span if stage is not None else self.span

    # --- events ----------------------------------------------------------------------------
    def progress(self) -> None:
        """An `ondine.progress` event on the current stage span, at most once per interval."""
        now_mono = time.monotonic()
        if now_mono - self._last_progress < self._progress_interval:
            return
        self._last_progress = now_mono
        now = snapshot.take(self.context)
        percent = 100.0 * now.rows_processed / now.rows_total if now.rows_total else 0.0
        self.current_span.add_event(
            semconv.EVENT_PROGRESS,
            {
                semconv.ATTR_ROWS_PROCESSED: now.rows_processed,
                semconv.ATTR_ROWS_TOTAL: now.rows_total,
                semconv.ATTR_PROGRESS_PERCENT: round(percent, 3),
                semconv.ATTR_COST_USD: now.cost_usd,
            },
        )

    def checkpoint(self, saved: bool, size_bytes: int | None) -> None:
        """An `ondine.checkpoint` event on the run span for one StateManager save."""
        self.span.add_event(
            semconv.EVENT_CHECKPOINT,
            span_attributes(
                {
                    **checkpoint_attributes(self.context),
                    # ondine never advances current_stage_index; ours is the stage that saved.
                    semconv.ATTR_CHECKPOINT_STAGE_INDEX: max(self._stage_count - 1, 0),
                    semconv.ATTR_CHECKPOINT_SAVED: saved,
                    semconv.ATTR_CHECKPOINT_BYTES: size_bytes,
                }
            ),
        )
        self._tell("checkpoint_saved", saved)

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
            if self._stage is not None:
                self._end_stage(self._stage, error=error, status="error" if error else "unknown")
        for action in cleanups:
            quietly("undoing a stage's instrumentation", action)
        final = snapshot.take(self.context)
        stats = _stats(self.context)
        duration = time.monotonic() - self._start_mono
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
                }
            )
        )
        if error is not None:  # success leaves the status UNSET (semantic conventions)
            record_error(self.span, error)
        if self._run_token is not None:
            _detach(self._run_token)
            self._run_token = None
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
