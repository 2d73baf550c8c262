"""ondine's UUID strings <-> OpenTelemetry trace/span ids, and W3C traceparent helpers.

ondine stamps every run with uuid4 strings (`context.trace_id`, `context.span_id`). Mapping them
exactly (the UUID's 128-bit integer is the trace id, its low 64 bits the root span id) lets a
user paste an id from ondine's logs into Jaeger, and lets us map back with `uuid_from_trace_id`.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

_SPAN_ID_MASK = (1 << 64) - 1
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


@dataclass(frozen=True)
class MappedIds:
    """OTel ids derived from ondine's strings; `exact` is False when we had to invent them."""

    trace_id: int
    span_id: int
    exact: bool


def _parse_128(value: object) -> int | None:
    """The 128-bit integer behind a UUID string or a 32-hex W3C id, or None if malformed."""
    if isinstance(value, uuid.UUID):
        number = value.int
    elif isinstance(value, str):
        text = value.strip().lower()
        if _HEX32.match(text):
            number = int(text, 16)
        else:
            try:
                number = uuid.UUID(text).int
            except ValueError:
                return None
    else:
        return None
    return number or None  # all-zero ids are invalid in OTel


def trace_id_from_ondine(value: object) -> int | None:
    """Trace id for an ondine trace id string; None when it cannot be mapped exactly."""
    return _parse_128(value)


def span_id_from_ondine(value: object) -> int | None:
    """Root span id for an ondine span id string: the UUID's low 64 bits (None if malformed)."""
    number = _parse_128(value)
    if number is None:
        return None
    return (number & _SPAN_ID_MASK) or None


def map_ids(trace_id: object, span_id: object) -> MappedIds:
    """Both ids at once, with fresh random ids for whatever is malformed."""
    mapped_trace = trace_id_from_ondine(trace_id)
    mapped_span = span_id_from_ondine(span_id)
    return MappedIds(
        trace_id=mapped_trace if mapped_trace is not None else random_trace_id(),
        span_id=mapped_span if mapped_span is not None else random_span_id(),
        exact=mapped_trace is not None and mapped_span is not None,
    )


def uuid_from_trace_id(trace_id: int) -> str:
    """The ondine (UUID) form of an OTel trace id: the reverse of `trace_id_from_ondine`."""
    return str(uuid.UUID(int=trace_id))


def random_trace_id() -> int:
    """A valid (non-zero) random 128-bit trace id."""
    return secrets.randbits(128) or 1


def random_span_id() -> int:
    """A valid (non-zero) random 64-bit span id."""
    return secrets.randbits(64) or 1


def format_traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    """W3C traceparent header value (version 00)."""
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


@dataclass(frozen=True)
class TraceParent:
    """A parsed W3C traceparent."""

    trace_id: int
    span_id: int
    sampled: bool


def parse_traceparent(value: object) -> TraceParent | None:
    """Parse a W3C traceparent; None for anything invalid (zero ids, version ff, bad shape)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags_hex, 16) & 0x01))
