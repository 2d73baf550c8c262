"""Span creation helpers: a run span with ondine's own ids, its parent, and error recording.

The run span must carry the ids ondine already printed (contract section 1) under any SDK
TracerProvider, including one the application built. We cannot replace the provider's id
generator, so we wrap the generator of *our own* tracer object: it hands out the pinned ids for
the one `start_span` call that asks for them, and defers to the provider's generator otherwise.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.redaction import redact
from ondine_otel.version import __version__

_PINNED: ContextVar[tuple[int | None, int] | None] = ContextVar("ondine_otel_pinned", default=None)


class _PinnableIdGenerator(IdGenerator):
    """Delegates to the provider's generator unless ids are pinned for the current call."""

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner

    def generate_trace_id(self) -> int:
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is not None:
            return pinned[0]
        return self.inner.generate_trace_id()

    def generate_span_id(self) -> int:
        pinned = _PINNED.get()
        if pinned is not None:
            return pinned[1]
        return self.inner.generate_span_id()

    def is_trace_id_random(self) -> bool:
        # uuid4-derived ids carry 122 random bits, so the W3C "random" flag stays truthful.
        return bool(getattr(self.inner, "is_trace_id_random", lambda: False)())


def tracer_for(provider: TracerProvider | None) -> Tracer:
    """Our tracer on `provider` (the global one when None), able to take pinned ids."""
    source = provider if provider is not None else trace.get_tracer_provider()
    tracer = source.get_tracer(semconv.INSTRUMENTATION_NAME, __version__)
    generator = getattr(tracer, "id_generator", None)
    if isinstance(generator, IdGenerator) and not isinstance(generator, _PinnableIdGenerator):
        tracer.id_generator = _PinnableIdGenerator(generator)  # type: ignore[attr-defined]
    return tracer


@contextmanager
def _pinned(trace_id: int | None, span_id: int) -> Iterator[None]:
    token = _PINNED.set((trace_id, span_id))
    try:
        yield
    finally:
        _PINNED.reset(token)


def start_span_with_ids(
    tracer: Tracer,
    name: str,
    *,
    trace_id: int,
    span_id: int,
    parent: Context,
    attributes: Mapping[str, AttributeValue] | None = None,
    links: Sequence[Link] = (),
    start_time: int | None = None,
) -> Span:
    """Start a span whose span id (and trace id, when it has no parent) are the given ones."""
    with _pinned(trace_id, span_id):
        return tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
            start_time=start_time,
        )


def parent_context(environ: Mapping[str, str] | None = None) -> Context:
    """Where a run joins: the caller's active span, else `TRACEPARENT`, else a new trace.

    `TRACEPARENT`/`TRACESTATE` follow the OTel environment-carrier spec, so a job launched by an
    orchestrator that exports them becomes a child of the orchestrator's span.
    """
    current = get_current()
    if trace.get_current_span(current).get_span_context().is_valid:
        return current
    env = os.environ if environ is None else environ
    carrier = {"traceparent": env.get("TRACEPARENT", "")}
    if env.get("TRACESTATE"):
        carrier["tracestate"] = env["TRACESTATE"]
    if carrier["traceparent"]:
        extracted = TraceContextTextMapPropagator().extract(carrier, context=Context())
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    return Context()


#: Longest error message kept on a span (provider errors can quote whole requests).
MAX_ERROR_MESSAGE = 1024


def error_message(error: BaseException) -> str:
    """What a span may say about `error`: redacted and bounded (see `record_error`)."""
    return redact(str(error))[:MAX_ERROR_MESSAGE]


def record_error(span: Span, error: BaseException) -> None:
    """Mark a span failed the way backends expect: an `exception` event and status ERROR.

    Message and stack trace are redacted: provider errors quote API keys ("Incorrect API key
    provided: sk-...") and the rows they failed on (e-mail addresses, phone numbers).
    """
    message = error_message(error)
    stacktrace = redact("".join(traceback.format_exception(error)))
    span.record_exception(
        error, {"exception.message": message, "exception.stacktrace": stacktrace}
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))


def span_attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Drop None values (OTel rejects them) so callers can pass optional fields directly."""
    return {key: value for key, value in values.items() if value is not None}
