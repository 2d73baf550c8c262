"""One run's LLM calls: metrics for every call, `chat` spans for a bounded, useful few.

Every call reaches the metric sinks (plain-Python aggregation, or the SDK on an application's
MeterProvider). Spans are what costs (35-45 µs each, plus export), so a run gets them for:
- its first `first_n` calls (what a user opens a trace to look at),
- every failed call, up to `error_limit` more (the calls a user needs to see),
- after that, successful calls at most `rate` per second (a steady sample through long runs).
Everything else is counted in `dropped`, reported on the run span. Spans are created when a
call ends, back-dated to its start: only then is it known whether the call failed.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from operator import eq
from time import time_ns
from typing import Any, Protocol

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ondine_otel.telemetry import call_record, modelname, semconv
from ondine_otel.telemetry.aggregation import SeriesRecorder
from ondine_otel.telemetry.call_record import CallFields, CallRecord, error_of, route_of
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.redaction import redact
from ondine_otel.telemetry.tracing import error_message, span_attributes

#: (provider, model, error_type) -> how to record such calls (resolved once per run and key).
CallSink = Callable[[str | None, str, str | None], SeriesRecorder]
_Resolved = tuple[str | None, str, tuple[SeriesRecorder, ...]]

#: A run folds its calls into the metric sinks once this many are waiting, or when a call
#: ends this long after the last fold (and whenever metrics are collected, and at run end).
FOLD_CALLS = 256
FOLD_AFTER_NS = 500_000_000

#: A deadline no call reaches (no span to sample: the rate is off).
_NEVER = 1 << 126
#: Characters of one captured message kept on a span (content capture only).
CONTENT_LIMIT = 8192


class LLMCalls:
    """Records the LLM calls of one run (called from ondine's per-row asyncio tasks)."""

    def __init__(
        self,
        tracer: Tracer,
        sinks: Sequence[CallSink],
        *,
        provider: str | None,
        model: str | None,
        first_n: int,
        error_limit: int,
        rate: float,
        capture_content: bool,
    ) -> None:
        self.tracer = tracer
        self.sinks = tuple(sinks)
        self.provider = provider
        self.model = model
        self.first_n = first_n
        self.error_limit = error_limit
        self.rate = rate
        self.capture_content = capture_content
        #: Request attributes of the client (temperature, max tokens), set when it is wrapped.
        self.request: dict[str, Any] = {}
        #: Parts whose wrapped client reports the calls right now; while any does, ondine's
        #: llm_call events are ignored (a stream's chunks share one client and overlap).
        self.wrapped = 0
        #: Calls recorded; of them, spans for the first ones, for failures, and sampled.
        self.calls = 0
        self.emitted = 0
        self.error_spans = 0
        self.sampled = 0
        #: Earliest end of a call that the rate may admit (one per 1/rate seconds).
        self._next_ns = 0
        self._by_route: dict[Any, _Resolved] = {}
        self._by_error: dict[str, _Resolved] = {}
        self._lock = threading.Lock()
        #: Calls not yet in the sinks (appended to by `timed`, this module's hot path, as
        #: `_due_ns` is read there). No lock per call: `append`, a prefix slice and its `del`
        #: are each atomic, and calls appended meanwhile land after the prefix.
        self._pending: list[CallFields] = []
        self._fold_lock = threading.Lock()
        self._fold_ns = 0
        #: The earliest end at which a successful call needs more than its append: a fold is
        #: due, or a span may be (0 while the first N spans are taken). One comparison on the
        #: hot path instead of the fold's and the span policy's.
        self._due_ns = 0

    def reporting(self, delta: int) -> None:
        """A wrapped client starts (+1) or stops (-1) reporting this run's calls."""
        with self._lock:
            self.wrapped += delta

    # --- identity ------------------------------------------------------------------------
    def resolve(self, route: Any, error_type: str | None = None) -> _Resolved:
        """(provider, model, recorders) of a call: its route split like the spec's, so labels
        agree, and each sink's recorder for it; cached, as a run calls one route thousands of
        times."""
        cache = self._by_route if error_type is None else self._by_error
        lookup = route if error_type is None else error_type
        found = cache.get(lookup)
        if found is None:
            key = str(route or self.model or "unknown")
            provider, model = modelname.split_route(key, self.provider)
            provider = provider or self.provider
            recorders = tuple(sink(provider, model, error_type) for sink in self.sinks)
            found = cache[lookup] = (provider, model, recorders)
        return found

    # --- one call ------------------------------------------------------------------------
    def record(self, call: CallRecord) -> None:
        """Count the call in every sink; give it a `chat` span if the span policy admits it.

        Every source but a wrapped client's successful call (`timed`) comes here: failed
        calls, ondine's `llm_call` events, a Router's failed attempts. The usual case (metrics
        only) is an append and three comparisons: the sinks get the calls in batches (`fold`),
        and the record's details are read only for a span."""
        end_ns = call.end_ns
        error = call.error
        # Only the metric fields wait for the fold, as an exact tuple: it keeps no response or
        # arguments alive, and the collector untracks it at its first pass, so waiting calls
        # never reach the oldest generation (whose growth brings on full collections).
        self._pending.append(call[:6])
        self._fold_if_due(end_ns)
        if error is None and self._settled(end_ns):
            return
        self._maybe_span(call)

    def _responded_due(
        self, start_ns: int, end_ns: int, response: Any, args: Any, kwargs: Any
    ) -> None:
        """What a successful call may need besides its append (`timed`'s fast path): a fold,
        a span. Ends with a fresh deadline: one computed from stale reads by racing callers
        is too early (it only ever moves later), and would send every call here until the
        next fold."""
        try:
            self._fold_if_due(end_ns)
            if not self._settled(end_ns):
                call = call_record.from_response(start_ns, end_ns, response, args, kwargs)
                self._maybe_span(call)
            self._refresh_due()
        except Exception as failure:  # noqa: BLE001 - the call succeeded; telemetry must not fail it
            report("recording an LLM call", failure)

    def _failed(self, start_ns: int, end_ns: int, error: Exception, args: Any, kwargs: Any) -> None:
        """`record` of a wrapped client's failed call; never raises (the call's own error must
        reach ondine)."""
        try:
            self.record(call_record.from_error(start_ns, end_ns, error, args, kwargs))
        except Exception as failure:  # noqa: BLE001
            report("recording a failed LLM call", failure)

    def _fold_if_due(self, end_ns: int) -> None:
        """Fold the waiting calls when the queue is full or the fold timer has run out."""
        if len(self._pending) >= FOLD_CALLS or end_ns >= self._fold_ns:
            self.fold()

    def _settled(self, end_ns: int) -> bool:
        """No span for a successful call ending now: the first N are taken and the rate is
        not due (read without the lock; `_admit` re-checks)."""
        return self.emitted >= self.first_n and (self.rate <= 0 or end_ns < self._next_ns)

    def _maybe_span(self, call: CallRecord) -> None:
        """A `chat` span for the call, if the span policy admits it."""
        error = call.error
        end_ns = call.end_ns
        if not self._admit(error is not None, end_ns):
            return
        error_type = None if error is None else type(error).__name__
        provider, model, _ = self.resolve(None if error else call.route, error_type)
        attributes = {
            semconv.GEN_AI_OPERATION_NAME: semconv.SPAN_LLM_OPERATION,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.GEN_AI_REQUEST_MODEL: model,
            **self.request,
            semconv.GEN_AI_USAGE_INPUT_TOKENS: call.input_tokens,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: call.output_tokens,
            semconv.ATTR_COST_USD: _number(call.cost_usd),
            semconv.GEN_AI_RESPONSE_FINISH_REASONS: (
                [str(call.finish_reason)] if call.finish_reason else None
            ),
            semconv.ERROR_TYPE: error_type,
            semconv.ATTR_DEPLOYMENT: call.deployment,
            semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_LLM,
            semconv.OPENINFERENCE_LLM_MODEL_NAME: model,
            semconv.OPENINFERENCE_LLM_TOKENS_PROMPT: call.input_tokens,
            semconv.OPENINFERENCE_LLM_TOKENS_COMPLETION: call.output_tokens,
            semconv.OPENINFERENCE_LLM_TOKENS_TOTAL: _total(call.input_tokens, call.output_tokens),
        }
        if call.temperature is not None:
            attributes[semconv.GEN_AI_REQUEST_TEMPERATURE] = _number(call.temperature)
        if call.max_tokens is not None:
            attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] = _integer(call.max_tokens)
        if self.capture_content:
            finish = None if error_type else str(call.finish_reason or "stop")
            attributes.update(messages(call.prompt, call.system, call.completion, finish))
        self._span(model, attributes, call.start_ns, call.end_ns, error)

    def fold(self) -> None:
        """Move the waiting calls into the metric sinks: one sink call per route or error type
        and batch, not per call."""
        with self._fold_lock:
            pending = self._pending
            count = len(pending)  # only what is here now: calls may arrive meanwhile
            calls = pending[:count]
            del pending[:count]
            self._fold_ns = time_ns() + FOLD_AFTER_NS
            self._refresh_due()
            if not calls:
                return
            routes: dict[Any, list[CallFields]] = {}
            errors: dict[str, list[CallFields]] = {}
            first_route = route_of(calls[0])
            if not any(map(error_of, calls)) and all(
                map(eq, repeat(first_route), map(route_of, calls))
            ):  # the usual batch: every call succeeded, on one route (checked in C)
                routes[first_route] = calls
            else:
                for call in calls:
                    error = error_of(call)
                    if error is None:
                        routes.setdefault(route_of(call), []).append(call)
                    else:
                        errors.setdefault(type(error).__name__, []).append(call)
            self.calls += len(calls)
            for route, group in routes.items():
                for record in self.resolve(route)[2]:
                    record(group)
            for error_type, group in errors.items():
                for record in self.resolve(None, error_type)[2]:
                    record(group)

    # --- spans ---------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Calls that got no span (all calls folded first: read once the run has ended)."""
        self.fold()
        with self._lock:
            return self.calls - self.emitted - self.error_spans - self.sampled

    def _admit(self, failed: bool, end_ns: int) -> bool:
        """Whether the span policy gives this call a span (counted if so), under the lock."""
        with self._lock:
            admitted = self._admit_locked(failed, end_ns)
            self._refresh_due()
            return admitted

    def _admit_locked(self, failed: bool, end_ns: int) -> bool:
        """The policy: the first N calls, then failures up to their cap, then the rate."""
        if self.emitted < self.first_n:
            self.emitted += 1
            return True
        if failed:
            if self.error_spans < self.error_limit:
                self.error_spans += 1
                return True
            return False
        if self.rate > 0 and end_ns >= self._next_ns:
            if self._next_ns:  # the first call past first_n starts the clock
                self.sampled += 1
                self._next_ns = end_ns + int(1e9 / self.rate)
                return True
            self._next_ns = end_ns + int(1e9 / self.rate)
        return False

    def _refresh_due(self) -> None:
        """`_due_ns` after the fold timer or the span policy moved."""
        taking_first = self.emitted < self.first_n
        span_due = 0 if taking_first else (self._next_ns if self.rate > 0 else _NEVER)
        self._due_ns = min(self._fold_ns, span_due)

    def _span(
        self,
        model: str,
        attributes: dict[str, Any],
        start_ns: int,
        end_ns: int,
        error: BaseException | None,
    ) -> None:
        span = self.tracer.start_span(
            f"{semconv.SPAN_LLM_OPERATION} {model}",
            kind=SpanKind.CLIENT,
            attributes=span_attributes(attributes),
            start_time=start_ns,
        )
        if error is not None:
            message = error_message(error)  # no stack trace: a call's frames say nothing
            span.add_event(
                "exception",
                {"exception.type": type(error).__name__, "exception.message": message},
                timestamp=end_ns,
            )
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))
        span.end(end_time=end_ns)


class CallSource(Protocol):
    """Where a wrapped client's call finds the run recording it."""

    #: The calls of the one run using the client (no lookup per call), else None.
    sole: LLMCalls | None

    def current(self) -> LLMCalls | None:
        """The calls of the run this call belongs to (from the OTel context), if any."""


def timed(
    original: Callable[..., Awaitable[Any]],
    source: CallSource,
    clock: Callable[[], int] = time_ns,
) -> Callable[..., Awaitable[Any]]:
    """`original` (a client's async call method), timed and recorded into its run's calls.

    The job's hottest path, one frame per call (its bytecodes are a measurable share of an
    instant row's): a successful call appends its metric fields, as `call_record.response_fields`
    builds them (a test holds the two equal), and checks one deadline, `_due_ns`; anything else
    (a fold, a span) waits for that deadline or a full queue. Only the metric fields wait for
    the fold, as an exact tuple: it keeps no response or arguments alive, and the collector
    untracks it at its first pass, so waiting calls never reach the oldest generation.
    """

    @functools.wraps(original)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        calls = source.sole
        if calls is None:
            calls = source.current()
            if calls is None:
                return await original(*args, **kwargs)
        start = clock()
        try:
            response = await original(*args, **kwargs)
        except Exception as error:
            calls._failed(start, clock(), error, args, kwargs)
            raise
        end = clock()
        try:
            fields = (start, end, None, response.model, response.tokens_in, response.tokens_out)
        except Exception:  # noqa: BLE001 - not an LLMResponse: the fields it has
            fields = _fields_of(start, end, response)
        pending = calls._pending
        pending.append(fields)
        if end >= calls._due_ns or len(pending) >= FOLD_CALLS:
            calls._responded_due(start, end, response, args, kwargs)
        return response

    traced.__ondine_otel_wrapped__ = True  # type: ignore[attr-defined]
    return traced


def _fields_of(start_ns: int, end_ns: int, response: Any) -> CallFields:
    """The metric fields of a response that is not an LLMResponse (None where it has none)."""
    try:
        return call_record.response_fields(start_ns, end_ns, response)
    except Exception as failure:  # noqa: BLE001 - a property raising: the call still counts
        report("reading an LLM response", failure)
        return (start_ns, end_ns, None, None, None, None)


def request_attributes(spec: Any) -> dict[str, Any]:
    """The GenAI request attributes an ondine LLM spec fixes for every call."""
    return span_attributes(
        {
            semconv.GEN_AI_REQUEST_TEMPERATURE: _number(getattr(spec, "temperature", None)),
            semconv.GEN_AI_REQUEST_MAX_TOKENS: _integer(getattr(spec, "max_tokens", None)),
        }
    )


def messages(
    prompt: Any, system: Any, completion: Any, finish_reason: str | None
) -> dict[str, str]:
    """GenAI semconv message attributes (JSON), redacted."""
    inputs = [
        {"role": role, "parts": [{"type": "text", "content": _content(text)}]}
        for role, text in (("system", system), ("user", prompt))
        if text
    ]
    outputs = []
    if completion:
        outputs.append(
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": _content(completion)}],
                "finish_reason": finish_reason or "stop",
            }
        )
    return {
        semconv.GEN_AI_INPUT_MESSAGES: json.dumps(inputs),
        semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps(outputs),
    }


def _content(text: Any) -> str:
    """Redacted, and cut to CONTENT_LIMIT: one huge prompt must not make the span batch too
    large for the collector (gRPC refuses requests over 4 MB), which would lose the trace."""
    clean = redact(str(text))
    if len(clean) <= CONTENT_LIMIT:
        return clean
    return clean[:CONTENT_LIMIT] + f"…[{len(clean) - CONTENT_LIMIT} characters cut]"


def _total(input_tokens: Any, output_tokens: Any) -> int | None:
    counts = [each for each in map(_integer, (input_tokens, output_tokens)) if each is not None]
    return sum(counts) if counts else None


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None
