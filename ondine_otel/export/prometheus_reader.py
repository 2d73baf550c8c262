"""The Prometheus reader on every supported exporter-prometheus version.

The newest exporter takes `registry` (0.63b0) and `scope_info_enabled` (0.64b0); older ones
register on the global registry and add no scope labels (nothing to turn off). This reader
takes the newest arguments everywhere and, where `registry` is missing, moves the exporter's
collector onto the given registry (and off it again at shutdown).
"""

from __future__ import annotations

import inspect
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client.registry import REGISTRY, CollectorRegistry

#: What this exporter-prometheus accepts.
_PARAMS = frozenset(inspect.signature(PrometheusMetricReader.__init__).parameters)


class PortablePrometheusReader(PrometheusMetricReader):
    """`PrometheusMetricReader(disable_target_info, scope_info_enabled, registry=...)` on any
    supported exporter version."""

    def __init__(
        self,
        disable_target_info: bool = False,
        scope_info_enabled: bool = True,
        *,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        options: dict[str, Any] = {}
        if "scope_info_enabled" in _PARAMS:
            options["scope_info_enabled"] = scope_info_enabled
        self._moved_to: CollectorRegistry | None = None
        if "registry" in _PARAMS:
            super().__init__(disable_target_info, registry=registry, **options)
            return
        super().__init__(disable_target_info, **options)
        collector: Any = getattr(self, "_collector")  # noqa: B009 - set by the exporter
        REGISTRY.unregister(collector)
        registry.register(collector)
        self._moved_to = registry

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        moved_to, self._moved_to = self._moved_to, None
        if moved_to is None:
            super().shutdown(timeout_millis=timeout_millis, **kwargs)
            return
        moved_to.unregister(getattr(self, "_collector"))  # noqa: B009
