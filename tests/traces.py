"""Helpers for reading finished spans in tests."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from ondine_otel.telemetry import semconv


def runs(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.name == semconv.SPAN_RUN]


def only_run(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    found = runs(spans)
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def stages_of(spans: Sequence[ReadableSpan], run: ReadableSpan) -> list[ReadableSpan]:
    """Stage spans whose parent is `run`, in index order."""
    children = [
        s
        for s in spans
        if s.name.startswith(semconv.SPAN_STAGE_PREFIX + " ")
        and s.parent is not None
        and s.parent.span_id == run.context.span_id
    ]
    return sorted(children, key=lambda s: s.attributes[semconv.ATTR_STAGE_INDEX])


def stage(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == f"{semconv.SPAN_STAGE_PREFIX} {name}"]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]
