"""Contract section 1: the exact, reversible id mapping and W3C traceparent helpers."""

from __future__ import annotations

import uuid

import pytest

from ondine_otel.telemetry import ids


def test_uuid_maps_to_its_integer_and_back() -> None:
    value = uuid.uuid4()
    trace_id = ids.trace_id_from_ondine(str(value))
    assert trace_id == value.int
    assert ids.uuid_from_trace_id(trace_id) == str(value)


def test_span_id_is_low_64_bits() -> None:
    value = uuid.uuid4()
    assert ids.span_id_from_ondine(str(value)) == value.int & (2**64 - 1)


def test_32_hex_w3c_ids_are_accepted_as_is() -> None:
    hex_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ids.trace_id_from_ondine(hex_id) == int(hex_id, 16)
    assert ids.trace_id_from_ondine(hex_id.upper()) == int(hex_id, 16)


@pytest.mark.parametrize("bad", ["", "not-a-uuid", None, 42, "0" * 32, str(uuid.UUID(int=0))])
def test_malformed_ids_give_fresh_random_ids(bad: object) -> None:
    assert ids.trace_id_from_ondine(bad) is None
    mapped = ids.map_ids(bad, bad)
    assert not mapped.exact
    assert mapped.trace_id != 0 and mapped.span_id != 0
    assert ids.map_ids(bad, bad).trace_id != mapped.trace_id


def test_map_ids_exact_for_ondine_strings() -> None:
    trace, span = uuid.uuid4(), uuid.uuid4()
    mapped = ids.map_ids(str(trace), str(span))
    assert mapped == ids.MappedIds(trace.int, span.int & (2**64 - 1), True)


def test_traceparent_round_trip() -> None:
    trace_id, span_id = ids.random_trace_id(), ids.random_span_id()
    header = ids.format_traceparent(trace_id, span_id)
    assert header == f"00-{trace_id:032x}-{span_id:016x}-01"
    assert ids.parse_traceparent(header) == ids.TraceParent(trace_id, span_id, True)
    unsampled = ids.format_traceparent(trace_id, span_id, sampled=False)
    assert ids.parse_traceparent(unsampled) == ids.TraceParent(trace_id, span_id, False)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        None,
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "garbage",
    ],
)
def test_invalid_traceparents_are_rejected(bad: object) -> None:
    assert ids.parse_traceparent(bad) is None


def test_future_version_traceparent_may_carry_extra_fields() -> None:
    parsed = ids.parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz")
    assert parsed is not None and parsed.sampled
