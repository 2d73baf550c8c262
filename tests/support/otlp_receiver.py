"""In-process OTLP receivers (HTTP/protobuf and gRPC) for asserting on exported telemetry.

Tests point the real SDK exporters at these instead of a collector binary so they
check the bytes that actually leave the process, with no extra dependency. Both
receivers share one thread-safe store and the same query helpers.
"""

from __future__ import annotations

import gzip
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from .wait import wait_until

Attributes = dict[str, Any]
ExportRequest = (
    trace_service_pb2.ExportTraceServiceRequest
    | metrics_service_pb2.ExportMetricsServiceRequest
    | logs_service_pb2.ExportLogsServiceRequest
)

_DELTA = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def any_value(value: common_pb2.AnyValue) -> Any:
    """Convert an OTLP AnyValue to plain Python so tests compare with ``==``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(kvs: Any) -> Attributes:
    """Convert a repeated KeyValue field to a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class EventView:
    name: str
    attributes: Attributes
    time_unix_nano: int


@dataclass(frozen=True)
class LinkView:
    trace_id: str
    span_id: str
    attributes: Attributes


@dataclass(frozen=True)
class SpanView:
    """A span flattened with its resource and scope; ids are lowercase hex ('' if unset)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # trace_pb2.Span.SpanKind value, e.g. trace_pb2.Span.SPAN_KIND_CLIENT
    status_code: int  # trace_pb2.Status.StatusCode value, e.g. trace_pb2.Status.STATUS_CODE_ERROR
    status_message: str
    attributes: Attributes
    events: list[EventView]
    links: list[LinkView]
    resource: Attributes
    scope: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    proto: trace_pb2.Span = field(repr=False, compare=False)

    @property
    def is_error(self) -> bool:
        return self.status_code == trace_pb2.Status.STATUS_CODE_ERROR


@dataclass(frozen=True)
class HistogramValue:
    """Explicit-bucket histogram point; ``bucket_counts`` has ``len(bounds) + 1`` entries."""

    count: int
    sum: float
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]


MetricValue = int | float | HistogramValue


@dataclass(frozen=True)
class LogView:
    body: Any
    severity_text: str
    attributes: Attributes
    resource: Attributes
    trace_id: str
    span_id: str


@dataclass(frozen=True)
class ReceivedRequest:
    """One accepted export call; headers (HTTP) or metadata (gRPC) are lower-cased."""

    signal: str  # "traces" | "metrics" | "logs"
    headers: dict[str, str]
    message: ExportRequest = field(repr=False)


def _freeze(attrs: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in attrs.items()))


class _Store:
    """Thread-safe record of received exports plus the query helpers tests use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self.rejected = 0

    def _record(self, req: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    def _reject(self) -> None:
        with self._lock:
            self.rejected += 1

    def requests(self, signal: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self._requests if signal is None or r.signal == signal]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self.rejected = 0

    def spans(self) -> list[SpanView]:
        """All received spans in arrival order."""
        out: list[SpanView] = []
        for req in self.requests("traces"):
            assert isinstance(req.message, trace_service_pb2.ExportTraceServiceRequest)
            for rs in req.message.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend(_span_view(s, resource, ss.scope.name) for s in ss.spans)
        return out

    def wait_for_spans(
        self,
        predicate: Callable[[list[SpanView]], object] = bool,
        timeout: float = 10.0,
    ) -> list[SpanView]:
        """Poll until ``predicate(spans())`` is truthy (default: any span) and return the spans."""
        result: list[SpanView] = []

        def check() -> bool:
            nonlocal result
            result = self.spans()
            return bool(predicate(result))

        wait_until(
            check,
            timeout=timeout,
            message=lambda: f"spans never matched; got {[s.name for s in result]}",
        )
        return result

    def _metrics(self, scope: str | None = None) -> list[tuple[Attributes, metrics_pb2.Metric]]:
        out: list[tuple[Attributes, metrics_pb2.Metric]] = []
        for req in self.requests("metrics"):
            assert isinstance(req.message, metrics_service_pb2.ExportMetricsServiceRequest)
            for rm in req.message.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    if scope is None or sm.scope.name == scope:
                        out.extend((resource, m) for m in sm.metrics)
        return out

    def metric_names(self) -> set[str]:
        return {m.name for _, m in self._metrics()}

    def metric_points(
        self, name: str, scope: str | None = None
    ) -> list[tuple[Attributes, MetricValue]]:
        """Current value per attribute set (and resource) of metric ``name`` (from instrumentation
        scope ``scope`` only, when given: another instrumentor may record the same name).

        Cumulative sums and gauges keep the latest point; delta sums and
        histograms are added up, so callers see totals whatever temporality
        the exporter was configured with.
        """
        merged: dict[tuple[Any, ...], tuple[int, Attributes, MetricValue]] = {}
        for resource, metric in self._metrics(scope):
            if metric.name != name:
                continue
            kind = metric.WhichOneof("data")
            if kind in ("sum", "gauge"):
                data = getattr(metric, kind)
                delta = kind == "sum" and data.aggregation_temporality == _DELTA
                for p in data.data_points:
                    value: MetricValue = getattr(p, p.WhichOneof("value") or "as_int")
                    _merge(merged, resource, p, value, delta)
            elif kind == "histogram":
                delta = metric.histogram.aggregation_temporality == _DELTA
                for hp in metric.histogram.data_points:
                    hist = HistogramValue(
                        count=hp.count,
                        sum=hp.sum,
                        bounds=tuple(hp.explicit_bounds),
                        bucket_counts=tuple(hp.bucket_counts),
                    )
                    _merge(merged, resource, hp, hist, delta)
        return [(attrs, value) for _, attrs, value in merged.values()]

    def wait_for_metric(
        self,
        name: str,
        predicate: Callable[[list[tuple[Attributes, MetricValue]]], object] = bool,
        timeout: float = 10.0,
    ) -> list[tuple[Attributes, MetricValue]]:
        """Poll until ``predicate(metric_points(name))`` is truthy and return the points."""
        result: list[tuple[Attributes, MetricValue]] = []

        def check() -> bool:
            nonlocal result
            result = self.metric_points(name)
            return bool(predicate(result))

        wait_until(
            check,
            timeout=timeout,
            message=lambda: (
                f"metric {name!r} never matched; points={result} "
                f"names={sorted(self.metric_names())}"
            ),
        )
        return result

    def logs(self) -> list[LogView]:
        out: list[LogView] = []
        for req in self.requests("logs"):
            assert isinstance(req.message, logs_service_pb2.ExportLogsServiceRequest)
            for rl in req.message.resource_logs:
                resource = attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    out.extend(
                        LogView(
                            body=any_value(r.body),
                            severity_text=r.severity_text,
                            attributes=attributes(r.attributes),
                            resource=resource,
                            trace_id=r.trace_id.hex(),
                            span_id=r.span_id.hex(),
                        )
                        for r in sl.log_records
                    )
        return out


def _merge(
    merged: dict[tuple[Any, ...], tuple[int, Attributes, MetricValue]],
    resource: Attributes,
    point: Any,
    value: MetricValue,
    delta: bool,
) -> None:
    attrs = attributes(point.attributes)
    key = (_freeze(resource), _freeze(attrs))
    ts: int = point.time_unix_nano
    old = merged.get(key)
    if old is not None and delta:
        value = _add(old[2], value)
    elif old is not None and old[0] > ts:
        return
    merged[key] = (max(ts, old[0]) if old else ts, attrs, value)


def _add(a: MetricValue, b: MetricValue) -> MetricValue:
    if isinstance(a, HistogramValue) and isinstance(b, HistogramValue):
        return HistogramValue(
            count=a.count + b.count,
            sum=a.sum + b.sum,
            bounds=b.bounds,
            bucket_counts=tuple(
                x + y for x, y in zip(a.bucket_counts, b.bucket_counts, strict=True)
            ),
        )
    assert not isinstance(a, HistogramValue) and not isinstance(b, HistogramValue)
    return a + b


def _span_view(span: trace_pb2.Span, resource: Attributes, scope: str) -> SpanView:
    return SpanView(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=span.kind,
        status_code=span.status.code,
        status_message=span.status.message,
        attributes=attributes(span.attributes),
        events=[EventView(e.name, attributes(e.attributes), e.time_unix_nano) for e in span.events],
        links=[
            LinkView(lk.trace_id.hex(), lk.span_id.hex(), attributes(lk.attributes))
            for lk in span.links
        ],
        resource=resource,
        scope=scope,
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
        proto=span,
    )


# path -> (signal, request type, serialized empty response)
_HTTP_ROUTES: dict[str, tuple[str, type[ExportRequest], bytes]] = {
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
    ),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString(),
    ),
    "/v1/logs": (
        "logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse().SerializeToString(),
    ),
}


class OtlpHttpReceiver(_Store):
    """OTLP/HTTP protobuf endpoint on 127.0.0.1:<OS-chosen port>.

    Exporters take ``f"{r.endpoint}/v1/traces"`` (per-signal endpoint) or
    ``r.endpoint`` as OTEL_EXPORTER_OTLP_ENDPOINT. Set ``fail_with`` to an HTTP
    status (e.g. 503) to make it reject exports, for retry/drop tests; rejected
    calls are counted in ``rejected`` and not stored. ``signals`` narrows what it takes
    (``{"traces"}`` for a traces-only backend, which answers 405 on the other path).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fail_with: int | None = None
        self.signals: frozenset[str] = frozenset({"traces", "metrics"})
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                route = _HTTP_ROUTES.get(self.path.split("?", 1)[0])
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if route is None:
                    self._reply(404, b"unknown OTLP path", "text/plain")
                    return
                if route[0] not in store.signals:
                    self._reply(405, b"method not allowed", "text/plain")
                    return
                if store.fail_with is not None:
                    store._reject()
                    self._reply(store.fail_with, b"rejected by test", "text/plain")
                    return
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/x-protobuf":
                    self._reply(415, b"only application/x-protobuf", "text/plain")
                    return
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                try:
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    signal, msg_type, response = route
                    message = msg_type.FromString(body)
                except (OSError, EOFError, zlib.error, DecodeError) as exc:
                    self._reply(400, f"undecodable body: {exc}".encode(), "text/plain")
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                store._record(ReceivedRequest(signal, headers, message))
                self._reply(200, response, "application/x-protobuf")

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep per-request access logs out of pytest output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"otlp-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def job_env(self, **overrides: str) -> dict[str, str]:
        """This process's environment plus the `OTEL_*` settings of a job (a subprocess) that
        exports traces here over OTLP/HTTP, quickly; `overrides` on top (metrics, service)."""
        return {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **overrides,
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OtlpHttpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OtlpGrpcReceiver(_Store):
    """OTLP/gRPC endpoint (Trace, Metrics and Logs services) on 127.0.0.1:<OS-chosen port>.

    Use with ``insecure=True`` exporters and ``endpoint=r.endpoint``. Set
    ``fail_with`` to a ``grpc.StatusCode`` (e.g. UNAVAILABLE) to reject exports.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fail_with: grpc.StatusCode | None = None
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceServicer(self), self._server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsServicer(self), self._server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("gRPC server could not bind 127.0.0.1")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server.start()

    def _handle(self, signal: str, request: ExportRequest, context: grpc.ServicerContext) -> None:
        if self.fail_with is not None:
            self._reject()
            context.abort(self.fail_with, "rejected by test")
        headers = {k.lower(): str(v) for k, v in context.invocation_metadata()}
        self._record(ReceivedRequest(signal, headers, request))

    def close(self) -> None:
        self._server.stop(grace=None).wait(timeout=5)

    def __enter__(self) -> OtlpGrpcReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._handle("traces", request, context)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._receiver._handle("metrics", request, context)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(
        self,
        request: logs_service_pb2.ExportLogsServiceRequest,
        context: grpc.ServicerContext,
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        self._receiver._handle("logs", request, context)
        return logs_service_pb2.ExportLogsServiceResponse()
