"""One LLM call, whoever saw it: the client wrapper (every call, failed ones too) or ondine's
`llm_call` event (the fallback for clients that cannot be wrapped).

Both build the same record, and `LLMCalls.record` turns it into the metrics and, for the calls
the span policy admits, a `chat` span. The record keeps references only (the prompt is looked
up from the call's arguments when a span with content capture needs it): it is built for every
call of a 10M-row job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from time import time_ns
from typing import Any


class CallRecord:
    """What one LLM call did: timing, route, usage, cost, outcome, and its text if captured."""

    __slots__ = (
        "completion",
        "cost_usd",
        "deployment",
        "end_ns",
        "error",
        "finish_reason",
        "input_tokens",
        "max_tokens",
        "output_tokens",
        "prompt",
        "route",
        "start_ns",
        "system",
        "temperature",
    )

    def __init__(
        self,
        start_ns: int,
        end_ns: int,
        *,
        route: Any = None,
        input_tokens: Any = None,
        output_tokens: Any = None,
        cost_usd: Any = None,
        finish_reason: Any = None,
        error: BaseException | None = None,
        prompt: Any = None,
        system: Any = None,
        completion: Any = None,
        temperature: Any = None,
        max_tokens: Any = None,
        deployment: str | None = None,
    ) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.route = route
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cost_usd = cost_usd
        self.finish_reason = finish_reason
        self.error = error
        self.prompt = prompt
        self.system = system
        self.completion = completion
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.deployment = deployment

    @property
    def duration_s(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e9

    @property
    def error_type(self) -> str | None:
        return None if self.error is None else type(self.error).__name__


def from_response(
    start_ns: int, end_ns: int, response: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> CallRecord:
    """A successful call of a wrapped client (ondine's `LLMResponse`)."""
    metadata = getattr(response, "metadata", None)
    return CallRecord(
        start_ns,
        end_ns,
        route=getattr(response, "model", None),
        input_tokens=getattr(response, "tokens_in", None),
        output_tokens=getattr(response, "tokens_out", None),
        cost_usd=getattr(response, "cost", None),
        finish_reason=metadata.get("finish_reason") if isinstance(metadata, dict) else None,
        prompt=_prompt(args, kwargs),
        system=kwargs.get("system_message"),
        completion=getattr(response, "text", None),
        deployment=_model_id(metadata),
    )


def _model_id(metadata: Any) -> str | None:
    """The deployment a router chose (litellm's model id, which ondine copies over)."""
    found = metadata.get("model_id") if isinstance(metadata, dict) else None
    return str(found) if found else None


def from_error(
    start_ns: int, end_ns: int, error: BaseException, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> CallRecord:
    """A failed call of a wrapped client."""
    return CallRecord(
        start_ns,
        end_ns,
        error=error,
        prompt=_prompt(args, kwargs),
        system=kwargs.get("system_message"),
    )


def from_event(event: Any) -> CallRecord:
    """One of ondine's `llm_call` events (successful calls of its LiteLLM client only)."""
    stamp = getattr(event, "timestamp", None)
    end_ns = int(stamp.timestamp() * 1e9) if isinstance(stamp, datetime) else time_ns()
    latency_ns = int(max(float(getattr(event, "latency_ms", 0.0) or 0.0), 0.0) * 1e6)
    return CallRecord(
        end_ns - latency_ns,
        end_ns,
        route=getattr(event, "model", None),
        input_tokens=getattr(event, "input_tokens", None),
        output_tokens=getattr(event, "output_tokens", None),
        cost_usd=getattr(event, "cost", None),
        finish_reason=getattr(event, "finish_reason", None),
        prompt=getattr(event, "prompt", None),
        system=getattr(event, "system_message", None),
        completion=getattr(event, "completion", None),
        temperature=getattr(event, "temperature", None),
        max_tokens=getattr(event, "max_tokens", None),
    )


def _prompt(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return args[0] if args else kwargs.get("prompt")
