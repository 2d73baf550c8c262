"""The metric readers ondine-otel builds: SDK readers that also deliver produced points.

The SDK has no hook to add points to a collection, so our readers merge them in
`_receive_metrics`, which every SDK reader funnels its collection through: the Prometheus
endpoint (and so the Pushgateway, which pushes that registry) and the OTLP periodic reader
get the same GenAI histograms and active-run gauges, each in the temporality it asked for.
"""

from __future__ import annotations

import inspect
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.registry import REGISTRY, CollectorRegistry

from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.points import PointProducer
from ondine_otel.version import __version__

_SCOPE = InstrumentationScope(semconv.INSTRUMENTATION_NAME, __version__)
#: What this exporter-prometheus accepts: `registry` arrived in 0.63b0, `scope_info_enabled`
#: (and the otel_scope_* labels it turns off) in 0.64b0.
_PROMETHEUS_PARAMS = frozenset(inspect.signature(PrometheusMetricReader.__init__).parameters)


class ProducingReader:
    """Mixin for an SDK MetricReader: adds the points of its producers to each collection."""

    _producers: list[PointProducer]
    _resource: Resource

    def add_producer(self, producer: PointProducer, resource: Resource) -> None:
        if not hasattr(self, "_producers"):
            self._producers = []
        self._producers.append(producer)
        self._resource = resource

    def _temporality(self) -> AggregationTemporality:
        chosen = getattr(self, "_instrument_class_temporality", {}).get(SdkHistogram)
        return chosen if chosen is not None else AggregationTemporality.CUMULATIVE

    def _merged(self, data: MetricsData | None) -> MetricsData | None:
        producers = getattr(self, "_producers", ())
        if not producers:
            return data
        extra: list[Metric] = []
        for producer in producers:
            extra.extend(producer.produce(id(self), self._temporality()))
        if not extra:
            return data
        resource_metrics = list(data.resource_metrics) if data is not None else []
        if resource_metrics:
            first = resource_metrics[0]
            scopes = list(first.scope_metrics)
            for index, scope in enumerate(scopes):
                if scope.scope.name == _SCOPE.name:
                    scopes[index] = ScopeMetrics(
                        scope.scope, [*scope.metrics, *extra], scope.schema_url
                    )
                    break
            else:
                scopes.append(ScopeMetrics(_SCOPE, extra, ""))
            resource_metrics[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
        else:
            resource_metrics = [
                ResourceMetrics(self._resource, [ScopeMetrics(_SCOPE, extra, "")], "")
            ]
        return MetricsData(resource_metrics)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        merged = self._merged(metrics_data)
        if merged is not None:
            super()._receive_metrics(  # type: ignore[misc]
                merged, timeout_millis=timeout_millis, **kwargs
            )


class OndinePrometheusReader(ProducingReader, PrometheusMetricReader):
    """The pull reader behind our /metrics endpoint and the Pushgateway pushes.

    Takes the newest exporter's arguments on every supported exporter version: an older one
    adds no scope labels (nothing to turn off) and registers on the global registry, so the
    collector is moved to ``registry`` here.
    """

    def __init__(
        self,
        disable_target_info: bool = False,
        scope_info_enabled: bool = True,
        *,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        options: dict[str, Any] = {}
        if "scope_info_enabled" in _PROMETHEUS_PARAMS:
            options["scope_info_enabled"] = scope_info_enabled
        if "registry" in _PROMETHEUS_PARAMS:
            super().__init__(disable_target_info, registry=registry, **options)
            return
        super().__init__(disable_target_info, **options)
        collector: Any = getattr(self, "_collector")  # noqa: B009 - set by the exporter
        REGISTRY.unregister(collector)
        registry.register(collector)
        self._moved_to: CollectorRegistry | None = registry

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        moved_to = getattr(self, "_moved_to", None)
        if moved_to is None:
            super().shutdown(timeout_millis=timeout_millis, **kwargs)
            return
        self._moved_to = None
        moved_to.unregister(getattr(self, "_collector"))  # noqa: B009


class OndinePeriodicReader(ProducingReader, PeriodicExportingMetricReader):
    """The OTLP (and console) push reader."""

    _abandoned = False

    def abandon(self) -> None:
        """Export nothing from now on (a forked child's copy of the parent's reader)."""
        self._abandoned = True

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if not self._abandoned:
            super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)
