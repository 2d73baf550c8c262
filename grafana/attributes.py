"""Span, resource and event attribute names a dashboard's TraceQL may use: the contract's."""

from __future__ import annotations

from ondine_otel.telemetry import semconv

_PREFIXES = ("ATTR_", "GEN_AI_", "ERROR_TYPE")

KNOWN_ATTRIBUTES: frozenset[str] = frozenset(
    value
    for name, value in vars(semconv).items()
    if name.startswith(_PREFIXES) and isinstance(value, str)
) | {"service.name"}
