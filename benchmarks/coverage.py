"""What each variant actually exported: spans by name and metric names, from the sink.

One untimed run per variant with the sink keeping the request bodies, decoded afterwards.
It shows what the user gets for the cost measured (run and stage spans, per-call spans,
metrics, a cost metric) and proves every variant was really exporting during the rounds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.peer import RemoteSink
from benchmarks.runner import run_once
from benchmarks.variants import Variant
from benchmarks.workload import Workload


def exported(variants: Sequence[Variant], workload: Workload, sink: RemoteSink) -> dict[str, Any]:
    """Per variant: span counts by name, metric names, and whether a cost metric is there."""
    found: dict[str, Any] = {}
    for variant in variants:
        sink.take_bodies()
        sink.keep_bodies = True
        try:
            run_once(variant, workload, sink)
        finally:
            sink.keep_bodies = False
        bodies = sink.take_bodies()
        spans: Counter[str] = Counter()
        for body in bodies["traces"]:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                for scope in resource.scope_spans:
                    spans.update(span.name for span in scope.spans)
        metrics: set[str] = set()
        for body in bodies["metrics"]:
            for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope in resource.scope_metrics:
                    metrics.update(metric.name for metric in scope.metrics)
        found[variant.name] = {
            "rows": workload.rows,
            "spans": sum(spans.values()),
            "spans_by_name": dict(sorted(spans.items())),
            "metrics": sorted(metrics),
            "cost_metric": any("cost" in name for name in metrics),
        }
    return found
