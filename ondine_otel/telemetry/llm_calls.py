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

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ondine_otel.telemetry import modelname, semconv
from ondine_otel.telemetry.aggregation import SeriesRecorder
from ondine_otel.telemetry.redaction import redact
from ondine_otel.telemetry.tracing import span_attributes

#: (provider, model, error_type) -> how to record such calls (resolved once per run and key).
CallSink = Callable[[str | None, str, str | None], SeriesRecorder]
_Resolved = tuple[str | None, str, tuple[SeriesRecorder, ...]]

_MAX_MESSAGE = 1024
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
        #: True while a wrapped client reports the calls (ondine's llm_call events are ignored).
        self.wrapped = False
        self.emitted = 0
        self.error_spans = 0
        self.dropped = 0
        self._allowance = 0.0
        self._last_ns = 0
        self._by_route: dict[Any, _Resolved] = {}
        self._by_error: dict[str, _Resolved] = {}
        self._lock = threading.Lock()

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

    # --- the two outcomes ----------------------------------------------------------------
    def succeeded(
        self, start_ns: int, end_ns: int, response: Any, args: Sequence[Any], kwargs: Mapping
    ) -> None:
        provider, model, recorders = self.resolve(getattr(response, "model", None))
        input_tokens = getattr(response, "tokens_in", None)
        output_tokens = getattr(response, "tokens_out", None)
        duration = max(end_ns - start_ns, 0) / 1e9
        for record in recorders:
            record(duration, input_tokens, output_tokens)
        if self._admit(False, end_ns):
            metadata = getattr(response, "metadata", None)
            finish = metadata.get("finish_reason") if isinstance(metadata, dict) else None
            attributes = self._attributes(provider, model, input_tokens, output_tokens)
            attributes[semconv.ATTR_COST_USD] = _number(getattr(response, "cost", None))
            attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [str(finish)] if finish else None
            if self.capture_content:
                attributes.update(
                    messages(_prompt(args, kwargs), kwargs.get("system_message"),
                             getattr(response, "text", None), str(finish or "stop"))
                )  # fmt: skip
            self._span(model, attributes, start_ns, end_ns, None)

    def failed(
        self, start_ns: int, end_ns: int, error: BaseException, args: Sequence[Any], kwargs: Mapping
    ) -> None:
        error_type = type(error).__name__
        provider, model, recorders = self.resolve(None, error_type)
        duration = max(end_ns - start_ns, 0) / 1e9
        for record in recorders:
            record(duration, None, None)
        if self._admit(True, end_ns):
            attributes = self._attributes(provider, model, None, None)
            attributes[semconv.ERROR_TYPE] = error_type
            if self.capture_content:
                attributes.update(
                    messages(_prompt(args, kwargs), kwargs.get("system_message"), None, None)
                )
            self._span(model, attributes, start_ns, end_ns, error)

    def from_event(self, event: Any, end_ns: int) -> None:
        """One of ondine's `llm_call` events (the fallback when the client is not wrapped)."""
        provider, model, recorders = self.resolve(getattr(event, "model", None))
        latency_ns = int(max(float(getattr(event, "latency_ms", 0.0) or 0.0), 0.0) * 1e6)
        start_ns = end_ns - latency_ns
        input_tokens = getattr(event, "input_tokens", None)
        output_tokens = getattr(event, "output_tokens", None)
        for record in recorders:
            record(latency_ns / 1e9, input_tokens, output_tokens)
        if self._admit(False, end_ns):
            finish = getattr(event, "finish_reason", None)
            attributes = self._attributes(provider, model, input_tokens, output_tokens)
            attributes[semconv.GEN_AI_REQUEST_TEMPERATURE] = _number(
                getattr(event, "temperature", None)
            )
            attributes[semconv.GEN_AI_REQUEST_MAX_TOKENS] = getattr(event, "max_tokens", None)
            attributes[semconv.ATTR_COST_USD] = _number(getattr(event, "cost", None))
            attributes[semconv.GEN_AI_RESPONSE_FINISH_REASONS] = [str(finish)] if finish else None
            if self.capture_content:
                attributes.update(
                    messages(getattr(event, "prompt", None),
                             getattr(event, "system_message", None),
                             getattr(event, "completion", None), str(finish or "stop"))
                )  # fmt: skip
            self._span(model, attributes, start_ns, end_ns, None)

    # --- spans ---------------------------------------------------------------------------
    def _admit(self, failed: bool, now_ns: int) -> bool:
        with self._lock:
            if self.emitted < self.first_n:
                self.emitted += 1
                return True
            if failed and self.error_spans < self.error_limit:
                self.error_spans += 1
                return True
            if not failed and self.rate > 0:
                if self._last_ns:
                    elapsed = (now_ns - self._last_ns) / 1e9
                    self._allowance = min(self._allowance + elapsed * self.rate, 1.0)
                self._last_ns = now_ns
                if self._allowance >= 1.0:
                    self._allowance -= 1.0
                    return True
            self.dropped += 1
            return False

    def _attributes(
        self, provider: str | None, model: str, input_tokens: Any, output_tokens: Any
    ) -> dict[str, Any]:
        return {
            semconv.GEN_AI_OPERATION_NAME: semconv.SPAN_LLM_OPERATION,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.GEN_AI_REQUEST_MODEL: model,
            **self.request,
            semconv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
        }

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
            message = redact(str(error))[:_MAX_MESSAGE]
            span.add_event(
                "exception",
                {"exception.type": type(error).__name__, "exception.message": message},
                timestamp=end_ns,
            )
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))
        span.end(end_time=end_ns)


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


def _prompt(args: Sequence[Any], kwargs: Mapping) -> Any:
    return args[0] if args else kwargs.get("prompt")


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
