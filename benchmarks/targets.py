"""The issue's targets as checks on a scenario's summary (see benchmarks/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """A variant's bound: a time ratio to bare, and/or below other variants of the same run."""

    max_ratio: float | None = None
    below: tuple[str, ...] = ()
    shutdown: bool = False  # and shutdown() returned within its timeout in every run

    def describe(self) -> str:
        parts = [] if self.max_ratio is None else [f"≤ {self.max_ratio:g}× bare"]
        parts += [f"< {other}" for other in self.below]
        parts += ["shutdown ≤ its timeout"] if self.shutdown else []
        return ", ".join(parts)

    def met(self, name: str, summaries: dict[str, dict[str, Any]]) -> bool | None:
        ratio = summaries[name].get("time_ratio")
        if ratio is None:
            return None
        ok = self.max_ratio is None or ratio <= self.max_ratio
        for other in self.below:
            other_ratio = summaries.get(other, {}).get("time_ratio")
            if other_ratio is None:
                return None
            ok = ok and ratio < other_ratio
        if self.shutdown:
            within = summaries[name].get("shutdown_within_timeout")
            if within is None:
                return None
            ok = ok and within
        return ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_time_ratio": self.max_ratio,
            "below": list(self.below),
            "shutdown_within_timeout": self.shutdown,
        }


RSS_OVER_BARE_MB = 20.0  # peak RSS of a 100k-row run, over bare's
# Streamed: what telemetry adds to the RSS delta may grow by this much from 50k to 100k rows
# (100 bytes a row): memory flat in rows.
STREAM_GROWTH_MB = 5.0
SCRAPE_100_RUNS_MS = 20.0  # one /metrics scrape with 100 active runs
