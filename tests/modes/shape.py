"""Reading a trace's shape from finished spans: roots, parents, ondine's ids as OTel ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

RUN = "ondine.pipeline"
STAGE_PREFIX = "ondine.stage "
LLM_STAGE = "ondine.stage LLMInvocation"
_LOW_64 = (1 << 64) - 1


def trace_ids(spans: Iterable[ReadableSpan]) -> set[int]:
    return {s.context.trace_id for s in spans}


def roots(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """Spans whose parent is not among `spans` (a caller's span counts as outside)."""
    ids = {s.context.span_id for s in spans}
    return [s for s in spans if s.parent is None or s.parent.span_id not in ids]


def parent(spans: Sequence[ReadableSpan], span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def stages(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(STAGE_PREFIX)]


def chats(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith("chat ")]


def failed(spans: Iterable[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.status.status_code is StatusCode.ERROR]


def otel_trace_id(ondine_id: str) -> int:
    """Contract section 1: the trace id is the UUID's integer."""
    return uuid.UUID(ondine_id).int


def otel_span_id(ondine_id: str) -> int:
    """Contract section 1: a run span's id is the UUID's low 64 bits."""
    return uuid.UUID(ondine_id).int & _LOW_64


def assert_nested(spans: Sequence[ReadableSpan]) -> None:
    """Every stage span sits under a run span; every chat span under an LLMInvocation stage."""
    for span in stages(spans):
        above = parent(spans, span)
        assert above is not None and above.name == RUN, (span.name, above and above.name)
    for span in chats(spans):
        above = parent(spans, span)
        assert above is not None and above.name == LLM_STAGE, (span.name, above and above.name)
