"""Produced points on any SDK MetricReader, ours or the application's.

The Python SDK has no MetricProducer (opentelemetry-python#4768), so there is no public way to
add points to a collection. Every SDK reader collects through the one callable its
MeterProvider registers on it (`MetricReader._collect`, set by `_set_collect_callback` since
SDK 1.12): wrapping that callable on the reader instance adds the GenAI histograms and the
active-run gauges to each collection, in the temporality that reader asks for, whichever
exporter it feeds (a Prometheus endpoint, OTLP, console, in-memory). This is how an
application-owned MeterProvider (zero-code, or an app's own set-up) gets the same per-call price
as ondine-otel's own readers.

It leans on private SDK attributes, so it checks them before it attaches: where they are
missing `attach_provider` returns False and the metrics record through SDK instruments instead
(same names, buckets and labels; the SDK's per-call cost). An application's reader keeps the
bridge after ondine-otel shuts down, as it keeps ondine-otel's observable counters: its series
do not vanish mid-process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.points import PointProducer
from ondine_otel.version import __version__

_SCOPE = InstrumentationScope(semconv.INSTRUMENTATION_NAME, __version__)
_MARK = "__ondine_otel_bridge__"


def readers_of(provider: Any) -> list[MetricReader] | None:
    """The readers registered on an SDK MeterProvider now, or None if the SDK hides them."""
    consumer = getattr(provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if isinstance(storages, dict):
        return [reader for reader in storages if isinstance(reader, MetricReader)]
    config = getattr(provider, "_sdk_config", None)
    readers = getattr(config, "metric_readers", None)
    if readers is None:
        return None
    return [reader for reader in readers if isinstance(reader, MetricReader)]


def _resource_of(provider: Any) -> Resource:
    resource = getattr(getattr(provider, "_sdk_config", None), "resource", None)
    return resource if isinstance(resource, Resource) else Resource.create({})


def can_attach(provider: Any) -> bool:
    """True where every reader of `provider` collects through the callable we wrap."""
    readers = readers_of(provider)
    return readers is not None and all(callable(getattr(r, "_collect", None)) for r in readers)


def attach_provider(provider: Any, producer: PointProducer) -> bool:
    """Bridge every reader of `provider`; False (nothing changed) where that is impossible."""
    if not can_attach(provider):
        return False
    resource = _resource_of(provider)
    for reader in readers_of(provider) or ():
        attach(reader, producer, resource)
    return True


def attach(reader: MetricReader, producer: PointProducer, resource: Resource) -> None:
    """Add `producer`'s points to every collection of `reader` (idempotent per producer)."""
    collect: Callable[..., Any] = reader._collect  # type: ignore[assignment]
    producers: list[PointProducer] | None = getattr(collect, _MARK, None)
    if producers is not None:
        if not any(existing is producer for existing in producers):
            producers.append(producer)
        return
    producers = [producer]

    def bridged(this: MetricReader, *args: Any, **kwargs: Any) -> MetricsData | None:
        data: MetricsData | None = collect(this, *args, **kwargs)
        try:
            extra = [
                metric
                for each in producers
                for metric in each.produce(id(this), _temporality(this))
            ]
            return merge(data, extra, resource)
        except Exception as error:  # noqa: BLE001 - the reader's own points must still go out
            report("adding ondine-otel's points to a metric collection", error)
            return data

    setattr(bridged, _MARK, producers)
    reader._collect = bridged  # type: ignore[assignment]


def silence(reader: MetricReader) -> None:
    """Collect nothing from now on (a forked child's copy of the parent's reader: the parent
    reports what it inherited, under its own service.instance.id)."""
    nothing: Callable[..., None] = lambda *args, **kwargs: None  # noqa: E731
    reader._collect = nothing  # type: ignore[assignment]


def _temporality(reader: MetricReader) -> AggregationTemporality:
    chosen = getattr(reader, "_instrument_class_temporality", {}).get(SdkHistogram)
    return chosen if chosen is not None else AggregationTemporality.CUMULATIVE


def merge(data: MetricsData | None, extra: list[Metric], resource: Resource) -> MetricsData | None:
    """`data` with `extra` added to ondine-otel's scope of its first resource."""
    if not extra:
        return data
    resource_metrics = list(data.resource_metrics) if data is not None else []
    if not resource_metrics:
        return MetricsData([ResourceMetrics(resource, [ScopeMetrics(_SCOPE, extra, "")], "")])
    first = resource_metrics[0]
    scopes = list(first.scope_metrics)
    for index, scope in enumerate(scopes):
        if scope.scope.name == _SCOPE.name:
            scopes[index] = ScopeMetrics(scope.scope, [*scope.metrics, *extra], scope.schema_url)
            break
    else:
        scopes.append(ScopeMetrics(_SCOPE, extra, ""))
    resource_metrics[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
    return MetricsData(resource_metrics)
