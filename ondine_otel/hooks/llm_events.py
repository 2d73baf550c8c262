"""ondine's llm_call events -> GenAI CLIENT spans and metrics.

ondine emits `llm_call` from inside the per-row asyncio task with placeholder ids, so the event
cannot say which run or stage it belongs to; the current OpenTelemetry context can, because the
LLMInvocation stage span is current on the thread that runs those tasks. The span is back-dated
from the event's timestamp by its latency, so its duration is the call's.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ondine.observability.base import PipelineObserver
from opentelemetry.trace import SpanKind

from ondine_otel.telemetry import modelname, semconv
from ondine_otel.telemetry.guard import guarded
from ondine_otel.telemetry.redaction import redact
from ondine_otel.telemetry.run import RunTelemetry, current_run
from ondine_otel.telemetry.tracing import span_attributes


def _epoch_ns(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    return None


def call_identity(event: Any, run: RunTelemetry) -> tuple[str | None, str]:
    """(provider, model) of a call: its route split like the spec's, so labels agree.

    Cached per run: a run calls one route thousands of times.
    """
    route = str(getattr(event, "model", "") or run.model or "unknown")
    hint = getattr(event, "provider", None)
    cache_key = (route, hint)
    found = run.call_identities.get(cache_key)
    if found is None:
        clean = None if hint in (None, "", "unknown") else str(hint).lower()
        provider, model = modelname.split_route(route, clean or run.provider)
        found = (provider or run.provider, model)
        run.call_identities[cache_key] = found
    return found


def record_llm_call(run: RunTelemetry, event: Any) -> None:
    """One GenAI span (within the run's cap) and the two GenAI histograms for one call."""
    provider, model = call_identity(event, run)
    latency_s = max(float(getattr(event, "latency_ms", 0.0) or 0.0) / 1000.0, 0.0)
    input_tokens = getattr(event, "input_tokens", None)
    output_tokens = getattr(event, "output_tokens", None)
    if run.listener is not None:
        run.listener.record_llm_call(
            provider=provider,
            model=model,
            duration_s=latency_s,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
    if not run.admit_llm_span():
        return
    end_ns = _epoch_ns(getattr(event, "timestamp", None))
    start_ns = end_ns - int(latency_s * 1e9) if end_ns is not None else None
    finish = getattr(event, "finish_reason", None)
    cost = getattr(event, "cost", None)
    attributes = span_attributes(
        {
            semconv.GEN_AI_OPERATION_NAME: semconv.SPAN_LLM_OPERATION,
            semconv.GEN_AI_PROVIDER_NAME: provider,
            semconv.GEN_AI_REQUEST_MODEL: model,
            semconv.GEN_AI_REQUEST_TEMPERATURE: _number(getattr(event, "temperature", None)),
            semconv.GEN_AI_REQUEST_MAX_TOKENS: getattr(event, "max_tokens", None),
            semconv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
            semconv.GEN_AI_RESPONSE_FINISH_REASONS: [str(finish)] if finish else None,
            semconv.ATTR_COST_USD: _number(cost),
        }
    )
    if run.capture_content:
        attributes.update(_messages(event))
    span = run.tracer.start_span(
        f"{semconv.SPAN_LLM_OPERATION} {model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=start_ns,
    )
    span.end(end_time=end_ns)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _messages(event: Any) -> dict[str, str]:
    """GenAI semconv message attributes (JSON), redacted."""
    inputs = []
    system = getattr(event, "system_message", None)
    if system:
        inputs.append({"role": "system", "parts": [{"type": "text", "content": redact(system)}]})
    prompt = getattr(event, "prompt", None)
    if prompt:
        inputs.append({"role": "user", "parts": [{"type": "text", "content": redact(prompt)}]})
    outputs = []
    completion = getattr(event, "completion", None)
    if completion:
        outputs.append(
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": redact(completion)}],
                "finish_reason": str(getattr(event, "finish_reason", "stop") or "stop"),
            }
        )
    return {
        semconv.GEN_AI_INPUT_MESSAGES: json.dumps(inputs),
        semconv.GEN_AI_OUTPUT_MESSAGES: json.dumps(outputs),
    }


class LLMCallListener(PipelineObserver):
    """Receives ondine's `llm_call` events and records them on the run current here."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)

    @guarded("on_llm_call")
    def on_llm_call(self, event: Any) -> None:
        run = current_run()
        if run is not None and not run.finished:
            record_llm_call(run, event)


def ensure_llm_events(context: Any) -> None:
    """Make ondine send this run's `llm_call` events to us, whatever entry started the run.

    ondine builds its event dispatcher only for observers named in the pipeline's spec, and
    hands it to the LLM client only later, just before the LLM stage; so a run's start is the
    moment to add our listener (to a new dispatcher, or to the one the spec asked for).
    """
    from ondine.observability.dispatcher import ObserverDispatcher

    dispatcher = getattr(context, "observer_dispatcher", None)
    if dispatcher is None:
        context.observer_dispatcher = ObserverDispatcher([LLMCallListener()])
        return
    listeners = getattr(dispatcher, "observers", None)
    if isinstance(listeners, list) and not any(
        isinstance(existing, LLMCallListener) for existing in listeners
    ):
        listeners.append(LLMCallListener())
