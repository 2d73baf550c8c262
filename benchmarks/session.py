"""What a variant is, and what one of its runs is set up with: shared by every set-up module."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ondine_otel
from benchmarks.peer import RemoteScraper
from benchmarks.workload import BuilderStep

SCRAPE_INTERVAL_S = 0.5
# The SDK's and ondine-otel's OTLP metric interval is 15 s; the peer gets the same.
METRIC_EXPORT_INTERVAL_MS = 15_000
SERVICE_NAME = "ondine-bench"
NO_CHAT_SPANS = {"llm_span_limit": 0, "llm_span_rate": 0, "llm_error_span_limit": 0}


def default_shutdown_timeout() -> float:
    """`Telemetry.shutdown()`'s own default timeout, read from its signature."""
    default = inspect.signature(ondine_otel.Telemetry.shutdown).parameters["timeout"].default
    return float(default)


@dataclass(frozen=True)
class Variant:
    name: str
    # "bare" | "ours" | "app_meter" | "zero_code" | "otel_observer" | "ondine_builtin"
    # | "openinference" | "openllmetry"
    kind: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)  # instrument() settings (ours)
    otlp: str = "sink"  # "sink" | "refused" | "hanging" | "unavailable" (ours)
    shutdown_timeout: float | None = None  # None: shutdown()'s default


@dataclass
class Session:
    """A variant set up for one run: what to add to the pipeline, and what its tear-down saw."""

    steps: list[BuilderStep] = field(default_factory=list)
    observers: list[Any] = field(default_factory=list)  # added to the built pipeline
    scraper: RemoteScraper | None = None
    teardown_s: float = 0.0
    shutdown_timeout: float | None = None
    hanging_connections: int | None = None
    uninstrumented_cleanly: bool | None = None
    prometheus_port: int | None = None
    # What the run left where the variant sends it (spans kept, series on a page, requests a
    # dead collector saw): proof that it was really exporting, or failing, during the run.
    evidence: dict[str, int] = field(default_factory=dict)
    # ondine functions still wrapped after the entry's own tear-down (put back by the harness).
    left_patched: list[str] | None = None
    # Sends what the variant's exporters hold (a span batch waiting for its delay, metric
    # state), so that counting the blocks a run kept alive does not count a queue about to
    # drain. Called before the tear-down, which then no longer exports that last batch.
    flush: Callable[[], object] | None = None

    def start(self) -> None:
        if self.scraper is not None:
            self.scraper.start()
