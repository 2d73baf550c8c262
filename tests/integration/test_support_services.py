"""Self-tests for tests/support: if these fail, adapter test failures can't be trusted.

They drive the real servers and the real SDK exporters, so they also prove the
CI machine has what the rest of the integration suite needs.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from tests.support.otlp_receiver import HistogramValue, OtlpGrpcReceiver, OtlpHttpReceiver
from tests.support.services import (
    find_binary,
    prometheus_config,
    sample_values,
    start_prometheus,
    start_pushgateway,
    wait_for_query,
)
from tests.support.wait import free_port, wait_until

pytestmark = pytest.mark.integration

RESOURCE = Resource.create({"service.name": "support-selftest"})


def test_wait_until_returns_value_and_explains_timeout() -> None:
    calls = iter([0, None, "ok"])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.001) == "ok"

    def boom() -> bool:
        raise ConnectionRefusedError("still starting")

    with pytest.raises(AssertionError, match="service never came up") as info:
        wait_until(boom, timeout=0.05, interval=0.01, message=lambda: "service never came up")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert 1024 <= free_port() <= 65535


def test_prometheus_config_is_valid_for_promtool(tmp_path: Path) -> None:
    """promtool ships with the prometheus package; a bad config would only show as no data."""
    promtool = find_binary("promtool")
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(["127.0.0.1:1", "127.0.0.1:2"]))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pushed_value(url: str, name: str, job: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("job") == job:
                return float(sample.value)
    return None


def test_pushgateway_and_prometheus_end_to_end(tmp_path: Path) -> None:
    """One Prometheus scrapes both a client endpoint and the Pushgateway.

    Combined because Prometheus' first scrape takes ~5s (target discovery is
    batched), which we would otherwise pay twice.
    """
    pushed = CollectorRegistry()
    Gauge("support_selftest_rows", "rows pushed", registry=pushed).set(42)
    scraped = CollectorRegistry()
    Gauge("support_selftest_inflight", "scraped gauge", ["stage"], registry=scraped).labels(
        stage="llm"
    ).set(7)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=scraped)
    client_target = f"127.0.0.1:{server.server_port}"
    try:
        with start_pushgateway(tmp_path) as gateway:
            push_to_gateway(gateway.address, job="support-selftest", registry=pushed)
            assert _pushed_value(gateway.url, "support_selftest_rows", "support-selftest") == 42

            with start_prometheus(tmp_path, [client_target, gateway.address]) as prom:
                result = wait_for_query(prom, 'support_selftest_inflight{stage="llm"}', timeout=45)
                assert sample_values(result) == [7.0]
                assert result[0]["metric"]["instance"] == client_target
                # honor_labels keeps the pushed job label.
                result = wait_for_query(
                    prom, 'support_selftest_rows{job="support-selftest"}', timeout=45
                )
                assert sample_values(result) == [42.0]
            assert prom.process.poll() is not None
        assert gateway.process.poll() is not None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _emit_spans(exporter: SpanExporter) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("support.selftest")
    with tracer.start_as_current_span("batch", kind=SpanKind.INTERNAL) as parent:
        parent.set_attribute("rows", 3)
        link = Link(parent.get_span_context(), {"why": "retry-of"})
        with tracer.start_as_current_span("llm.call", kind=SpanKind.CLIENT, links=[link]) as child:
            child.set_attribute("model", "fake")
            child.set_attribute("tags", ["a", "b"])
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "rate limited"))
    provider.shutdown()


def _check_spans(receiver: OtlpHttpReceiver | OtlpGrpcReceiver) -> None:
    spans = receiver.wait_for_spans(lambda s: len(s) >= 2)
    by_name = {s.name: s for s in spans}
    parent, child = by_name["batch"], by_name["llm.call"]
    assert child.trace_id == parent.trace_id and len(parent.trace_id) == 32
    assert child.parent_span_id == parent.span_id and parent.parent_span_id == ""
    assert parent.attributes == {"rows": 3}
    assert child.attributes == {"model": "fake", "tags": ["a", "b"]}
    assert child.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert child.is_error and child.status_message == "rate limited"
    assert [(e.name, e.attributes) for e in child.events] == [("retry", {"attempt": 2})]
    assert [(lk.span_id, lk.attributes) for lk in child.links] == [
        (parent.span_id, {"why": "retry-of"})
    ]
    assert child.resource["service.name"] == "support-selftest"
    assert child.scope == "support.selftest"


def _emit_metrics(exporter: MetricExporter, exports: int) -> None:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("support.selftest")
    rows = meter.create_counter("support.rows")
    latency = meter.create_histogram("support.latency", unit="s")
    for _ in range(exports):
        rows.add(2, {"status": "ok"})
        rows.add(1, {"status": "error"})
        latency.record(0.2)
        latency.record(3.0)
        assert provider.force_flush(timeout_millis=10_000)
    provider.shutdown()


def _check_metrics(receiver: OtlpHttpReceiver | OtlpGrpcReceiver, exports: int) -> None:
    points = receiver.wait_for_metric("support.rows", lambda p: len(p) == 2)
    assert sorted((a["status"], v) for a, v in points) == [
        ("error", exports),
        ("ok", 2 * exports),
    ]
    ((attrs, hist),) = receiver.metric_points("support.latency")
    assert attrs == {}
    assert isinstance(hist, HistogramValue)
    assert hist.count == 2 * exports
    assert hist.sum == pytest.approx(3.2 * exports)
    assert len(hist.bucket_counts) == len(hist.bounds) + 1
    assert sum(hist.bucket_counts) == hist.count


def test_otlp_http_receiver_decodes_sdk_exports() -> None:
    with OtlpHttpReceiver() as receiver:
        _emit_spans(
            HttpSpanExporter(
                endpoint=f"{receiver.endpoint}/v1/traces",
                compression=Compression.Gzip,
                headers={"x-test-token": "abc"},
            )
        )
        _check_spans(receiver)
        request = receiver.requests("traces")[0]
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["x-test-token"] == "abc"

        # Cumulative temporality (the SDK default): latest value wins.
        _emit_metrics(HttpMetricExporter(endpoint=f"{receiver.endpoint}/v1/metrics"), exports=2)
        _check_metrics(receiver, exports=2)


def test_otlp_grpc_receiver_decodes_sdk_exports() -> None:
    with OtlpGrpcReceiver() as receiver:
        _emit_spans(
            GrpcSpanExporter(
                endpoint=receiver.endpoint,
                insecure=True,
                headers={"x-test-token": "abc"},
                compression=grpc.Compression.Gzip,
            )
        )
        _check_spans(receiver)
        assert receiver.requests("traces")[0].headers["x-test-token"] == "abc"

        # Delta temporality: the receiver must add the points up.
        delta: dict[type, AggregationTemporality] = {
            Counter: AggregationTemporality.DELTA,
            Histogram: AggregationTemporality.DELTA,
        }
        _emit_metrics(
            GrpcMetricExporter(
                endpoint=receiver.endpoint, insecure=True, preferred_temporality=delta
            ),
            exports=3,
        )
        _check_metrics(receiver, exports=3)


@pytest.fixture
def failing_http_receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver() as receiver:
        receiver.fail_with = 400  # not retryable, so the exporter gives up at once
        yield receiver


def test_receivers_can_reject_exports(failing_http_receiver: OtlpHttpReceiver) -> None:
    context = SpanContext(trace_id=1, span_id=2, is_remote=False)
    span = ReadableSpan(name="dropped", context=context, resource=RESOURCE)
    http = HttpSpanExporter(endpoint=f"{failing_http_receiver.endpoint}/v1/traces", timeout=5)
    assert http.export([span]) == SpanExportResult.FAILURE
    assert failing_http_receiver.rejected == 1 and failing_http_receiver.spans() == []
    http.shutdown()

    with OtlpGrpcReceiver() as receiver:
        receiver.fail_with = grpc.StatusCode.INVALID_ARGUMENT
        exporter = GrpcSpanExporter(endpoint=receiver.endpoint, insecure=True, timeout=5)
        assert exporter.export([span]) == SpanExportResult.FAILURE
        assert receiver.rejected == 1 and receiver.spans() == []
        exporter.shutdown()
