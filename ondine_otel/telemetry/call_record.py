"""One LLM call, whoever saw it: the client wrapper (every call, failed ones too), ondine's
`llm_call` event (the fallback for clients that cannot be wrapped) or a Router's failed
deployment attempt.

Every source builds a `CallRecord`, and `LLMCalls.record` turns it into the metrics and, for
the calls the span policy admits, a `chat` span. A record is built for every call of a 10M-row
job, in the job's own time: it is a tuple (built in C, its fields read in C) holding what the
metrics need (timing, outcome, route, tokens) and its source, from which the details a span
shows (text, cost, finish reason, request settings) are read only when a span asks. Until the
metrics fold them, calls wait as `CallFields` (the first six fields alone), which keep no source
object alive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from time import time_ns
from typing import Any

_new = tuple.__new__

#: The fields every record starts with, as C-level getters: the metrics read whole batches of
#: records with `map` (no Python call per record).
start_of = itemgetter(0)
end_of = itemgetter(1)
error_of = itemgetter(2)
route_of = itemgetter(3)
input_tokens_of = itemgetter(4)
output_tokens_of = itemgetter(5)


#: A call's metric fields, the first six of its `CallRecord` (what the metrics fold; a call
#: waiting to be folded is an exact tuple of them, holding no source object).
CallFields = tuple[Any, ...]


def _unknown(record: CallRecord) -> Any:
    return None


def _of_source(name: str) -> Any:
    """A detail read from the record's source object (its field 6), None if it has none."""
    return property(lambda record: getattr(record[6], name, None))


class CallRecord(tuple):
    """What one LLM call did: (start_ns, end_ns, error, route, input_tokens, output_tokens),
    then its source; the details a span shows are None unless the source knows them."""

    __slots__ = ()

    start_ns: int = property(start_of)  # type: ignore[assignment]
    end_ns: int = property(end_of)  # type: ignore[assignment]
    error: BaseException | None = property(error_of)  # type: ignore[assignment]
    route: Any = property(route_of)
    input_tokens: Any = property(input_tokens_of)
    output_tokens: Any = property(output_tokens_of)

    def __new__(
        cls,
        start_ns: int,
        end_ns: int,
        route: Any = None,
        input_tokens: Any = None,
        output_tokens: Any = None,
        error: BaseException | None = None,
    ) -> CallRecord:
        return _new(cls, (start_ns, end_ns, error, route, input_tokens, output_tokens))

    # --- details, read only for the calls that get a span (sources override them) ------
    cost_usd = finish_reason = prompt = system = completion = property(_unknown)
    temperature = max_tokens = deployment = property(_unknown)


class _ClientCall(CallRecord):
    """A call of a wrapped client; its source: ondine's `LLMResponse` (None if the call
    raised), and the call's positional and keyword arguments (the prompt is the first)."""

    __slots__ = ()

    cost_usd = _of_source("cost")
    completion = _of_source("text")

    @property
    def finish_reason(self) -> Any:
        metadata = getattr(self[6], "metadata", None)
        return metadata.get("finish_reason") if isinstance(metadata, dict) else None

    @property
    def prompt(self) -> Any:
        args, kwargs = self[7], self[8]
        return args[0] if args else kwargs.get("prompt")

    @property
    def system(self) -> Any:
        return self[8].get("system_message")

    @property
    def deployment(self) -> str | None:
        """The deployment a router chose (litellm's model id, which ondine copies over)."""
        metadata = getattr(self[6], "metadata", None)
        found = metadata.get("model_id") if isinstance(metadata, dict) else None
        return str(found) if found else None


class _EventCall(CallRecord):
    """One of ondine's `llm_call` events; its source: the event."""

    __slots__ = ()

    cost_usd = _of_source("cost")
    finish_reason = _of_source("finish_reason")
    prompt = _of_source("prompt")
    system = _of_source("system_message")
    completion = _of_source("completion")
    temperature = _of_source("temperature")
    max_tokens = _of_source("max_tokens")


class _FailedAttempt(CallRecord):
    """A deployment attempt a Router gave up on (it then retried or failed over); its source:
    the deployment's safe identity."""

    __slots__ = ()

    @property
    def deployment(self) -> str | None:
        found: str | None = self[6]
        return found


def response_fields(start_ns: int, end_ns: int, response: Any) -> CallFields:
    """The metric fields of a wrapped client's successful call (ondine's `LLMResponse`): an
    exact tuple of plain values, which the metrics fold in batches."""
    return (
        start_ns,
        end_ns,
        None,
        getattr(response, "model", None),
        getattr(response, "tokens_in", None),
        getattr(response, "tokens_out", None),
    )


def from_response(
    start_ns: int, end_ns: int, response: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> CallRecord:
    """A successful call of a wrapped client, with its source for a span's details."""
    return _new(_ClientCall, (*response_fields(start_ns, end_ns, response), response, args, kwargs))


def from_error(
    start_ns: int, end_ns: int, error: BaseException, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> CallRecord:
    """A failed call of a wrapped client."""
    return _new(_ClientCall, (start_ns, end_ns, error, None, None, None, None, args, kwargs))


def from_event(event: Any) -> CallRecord:
    """One of ondine's `llm_call` events (successful calls of its LiteLLM client only)."""
    stamp = getattr(event, "timestamp", None)
    end_ns = int(stamp.timestamp() * 1e9) if isinstance(stamp, datetime) else time_ns()
    latency_ns = int(max(float(getattr(event, "latency_ms", 0.0) or 0.0), 0.0) * 1e6)
    return _new(
        _EventCall,
        (
            end_ns - latency_ns,
            end_ns,
            None,
            getattr(event, "model", None),
            getattr(event, "input_tokens", None),
            getattr(event, "output_tokens", None),
            event,
        ),
    )


def failed_attempt(
    start_ns: int, end_ns: int, error: BaseException, deployment: str | None
) -> CallRecord:
    """A Router's failed attempt on one deployment."""
    return _new(_FailedAttempt, (start_ns, end_ns, error, None, None, None, deployment))
