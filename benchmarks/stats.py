"""From samples to a variant's summary: medians, ranges, ratios to bare, per-call cost.

Two ratios. ``time_ratio`` = median(variant) / median(bare), the headline. ``round_ratios`` =
variant / bare within each round (the two ran seconds apart, so slow phases of the machine
cancel out better); their spread, their median's 95 % interval (`median_interval`) and bare_2
against bare show how far to trust a ratio.
``cpu_ratio``: as ``time_ratio`` for the process's CPU time, which other processes competing
for the machine's CPUs do not lengthen (its slow phases still do).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.runner import Sample

BASELINE = "bare"
# Allowance over a shutdown timeout for joining the bounded workers and closing the endpoint.
SLACK = 0.05


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summarize(
    timed: dict[str, list[Sample]],
    traced: dict[str, list[Sample]],
    rows: int,
    descriptions: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """One summary per variant, baseline first; every run must report the same cost."""
    costs = {s.cost for group in (timed, traced) for runs in group.values() for s in runs}
    if len(costs) > 1:  # telemetry must never change what ondine computes
        raise RuntimeError(f"runs disagree on ondine's cost: {sorted(costs)}")
    base = timed.get(BASELINE, [])
    base_median = statistics.median(s.seconds for s in base) if base else None
    base_cpu = statistics.median(s.cpu_s for s in base) if base else None
    base_peak = _median([s.peak_bytes for s in traced.get(BASELINE, [])])
    base_rss = _median([_rss_delta(s) for s in base])
    out: dict[str, dict[str, Any]] = {}
    for name, runs in timed.items():
        times = [s.seconds for s in runs]
        median = statistics.median(times) if times else None
        ratio = median / base_median if median and base_median else None
        cpu = statistics.median(s.cpu_s for s in runs) if runs else None
        paired = (
            [s.seconds / b.seconds for s, b in zip(runs, base, strict=False)]
            if name != BASELINE
            else []
        )
        peak = _median([s.peak_bytes for s in traced.get(name, [])])
        rss = _median([_rss_delta(s) for s in runs])
        teardown = [s.teardown_s for s in runs]
        out[name] = {
            "description": descriptions.get(name, ""),
            "runs": len(times),
            "wall_s": [round(t, 4) for t in times],
            "median_s": _r(median, 4),
            "min_s": _r(min(times), 4) if times else None,
            "max_s": _r(max(times), 4) if times else None,
            "rows_per_s": _r(rows / median if median else None, 0),
            "time_ratio": _r(ratio, 3),
            "cpu_median_s": _r(cpu, 4),
            "cpu_ratio": _r(cpu / base_cpu if cpu and base_cpu else None, 3),
            "gc_s_median": _r(statistics.median(s.gc_s for s in runs), 4) if runs else None,
            "gc_full_per_run": [s.gc_full for s in runs],
            "round_ratios": [round(p, 3) for p in paired],
            "round_ratio_median": _r(statistics.median(paired), 3) if paired else None,
            "round_ratio_ci95": _interval(paired),
            "per_call_us": _r(
                (median - base_median) / rows * 1e6
                if median is not None and base_median is not None and rows
                else None,
                1,
            ),
            "peak_tracemalloc_bytes": peak,
            "peak_tracemalloc_over_bare_bytes": None
            if peak is None or base_peak is None
            else peak - base_peak,
            "rss_delta_bytes": rss,
            "rss_delta_range_bytes": _range([_rss_delta(s) for s in runs]),
            "rss_over_bare_bytes": None if rss is None or base_rss is None else rss - base_rss,
            "blocks_kept": _median([s.blocks_kept for s in runs]),
            "teardown_s_median": _r(statistics.median(teardown), 3) if teardown else None,
            "teardown_s_max": _r(max(teardown), 3) if teardown else None,
            "shutdown_timeout_s": runs[0].shutdown_timeout if runs else None,
            "shutdown_within_timeout": _within_timeout(runs),
            "linger_s_max": _r(max(s.linger_s for s in runs), 3) if runs else None,
            "lingering_threads_max": max(s.lingering_threads for s in runs) if runs else None,
            "scrapes_per_run": [s.scrapes for s in runs],
            "scrape_failures": sum(s.scrape_failures for s in runs),
            "exported_per_run": [s.exported for s in runs],
            "hanging_connections": [s.hanging_connections for s in runs]
            if runs and runs[0].hanging_connections is not None
            else None,
            "uninstrumented_cleanly": None
            if not runs or runs[0].uninstrumented_cleanly is None
            else all(s.uninstrumented_cleanly for s in runs),
            "evidence_per_run": [s.evidence for s in runs],
            "left_patched": runs[0].left_patched if runs else None,
            "cost_usd": runs[0].cost if runs else None,
        }
    return out


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free interval for the median of `values` (order statistics): the k-th
    smallest and k-th largest, k the largest with P(Binomial(n, 1/2) < k) <= (1 - level) / 2.
    Assumes only independent rounds; None when n is too small for the level (n < 6 at 95 %)."""
    n = len(values)
    tail = (1 - level) / 2
    k, below = 0, 0.0
    while k < n // 2:
        below_next = below + math.comb(n, k) / 2**n  # P(X <= k)
        if below_next > tail:
            break
        k, below = k + 1, below_next
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def _interval(paired: Sequence[float]) -> list[float] | None:
    found = median_interval(paired)
    return None if found is None else [round(found[0], 3), round(found[1], 3)]


def _within_timeout(runs: Sequence[Sample]) -> bool | None:
    """Every tear-down returned within its shutdown timeout (with `SLACK`); None if untimed."""
    if not runs or any(s.shutdown_timeout is None for s in runs):
        return None
    return all(s.teardown_s <= s.shutdown_timeout * (1 + SLACK) for s in runs if s.shutdown_timeout)


def _rss_delta(sample: Sample) -> int | None:
    if sample.rss_before is None or sample.rss_peak is None:
        return None
    return sample.rss_peak - sample.rss_before


def _range(values: Sequence[int | None]) -> list[int] | None:
    known = [v for v in values if v is not None]
    return [min(known), max(known)] if known else None


def _median(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return int(statistics.median(known)) if known else None


def growth(smaller: dict[str, Any], larger: dict[str, Any]) -> dict[str, int | None]:
    """A variant's RSS delta and live blocks kept at fewer and at more rows, and the
    differences (flat: near 0)."""
    low, high = smaller["rss_delta_bytes"], larger["rss_delta_bytes"]
    kept_low, kept_high = smaller.get("blocks_kept"), larger.get("blocks_kept")
    return {
        "rss_delta_smaller_bytes": low,
        "rss_delta_larger_bytes": high,
        "growth_bytes": None if low is None or high is None else high - low,
        "blocks_kept_smaller": kept_low,
        "blocks_kept_larger": kept_high,
        "blocks_growth": None if kept_low is None or kept_high is None else kept_high - kept_low,
    }


def noise(summaries: dict[str, dict[str, Any]], other: str = "bare_2") -> dict[str, Any] | None:
    """bare against bare: the ratio two identical variants show in the same rounds."""
    second = summaries.get(other)
    if second is None or second["time_ratio"] is None:
        return None
    paired = second["round_ratios"]
    return {
        "time_ratio": second["time_ratio"],
        "cpu_ratio": second.get("cpu_ratio"),
        "round_ratio_median": second["round_ratio_median"],
        "round_ratio_min": min(paired) if paired else None,
        "round_ratio_max": max(paired) if paired else None,
    }
