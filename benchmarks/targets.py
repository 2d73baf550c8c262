"""The issue's targets as checks on a scenario's summary (see benchmarks/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """A variant's bound: a time ratio to bare, and/or below other variants of the same run."""

    max_ratio: float | None = None
    below: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [] if self.max_ratio is None else [f"≤ {self.max_ratio:g}× bare"]
        parts += [f"< {other}" for other in self.below]
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
        return ok

    def as_dict(self) -> dict[str, Any]:
        return {"max_time_ratio": self.max_ratio, "below": list(self.below)}


RSS_OVER_BARE_MB = 20.0  # peak RSS of a 100k-row run, over bare's
SCRAPE_100_RUNS_MS = 20.0  # one /metrics scrape with 100 active runs
