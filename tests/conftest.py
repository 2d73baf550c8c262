"""Shared fixtures: an SDK TracerProvider with an in-memory exporter, and the instrumentor on it.

Tests never rely on root logging (importing ondine replaces the root handlers).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from ondine_otel.instrumentor import OndineInstrumentor
from tests.support.fixtures import *  # noqa: F403 - otlp receivers, pushgateway, prometheus


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def instrumented(tracer_provider: TracerProvider) -> Iterator[OndineInstrumentor]:
    """The instrumentor on the in-memory provider, undone after the test."""
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    yield instrumentor
    instrumentor.uninstrument()
