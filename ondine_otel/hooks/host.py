"""What the hooks need from the runtime that owns them, as a Protocol.

Hooks sit below the runtime: they are handed a host instead of importing it, so the layering
stays one way (runtime -> hooks -> telemetry) and tests can host them on anything that fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.hooks.client import ClientPatches
from ondine_otel.hooks.handovers import Handovers
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RunListener


class Host(Protocol):
    """The runtime, as the hooks see it."""

    registry: RunRegistry
    clients: ClientPatches
    handovers: Handovers

    def auto_observer(self) -> Any:
        """The observer attached to every execute() while the instrumentor is on, or None."""

    def ensure_patched(self) -> None:
        """Apply the execute/StateManager wrappers if they are not applied yet."""

    def ensure_router_logger(self) -> None:
        """Register the litellm callback for failed router attempts, once per process."""

    def destinations(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        label_limit: int,
    ) -> tuple[TracerProvider | None, Sequence[RunListener]]:
        """Where a run observed with these providers reports: tracer provider, listeners."""
