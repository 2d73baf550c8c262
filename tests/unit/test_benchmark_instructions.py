"""`benchmarks.instructions` counts what it says: the counted run and nothing around it.

The counts come from real processes under valgrind's callgrind (Debian package ``valgrind``),
tiny sizes; no ratio between variants is asserted (that is a bench figure).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks import instructions
from benchmarks.instructions import Count, Job
from tests.support.services import find_binary


def test_the_starting_points_cover_the_collectors_cycle_evenly() -> None:
    assert instructions.phases(4) == [0.125, 0.375, 0.625, 0.875]
    assert instructions.phases(1) == [0.5]


def test_the_cycle_estimate_weighs_misses_as_callgrind_does() -> None:
    events = {"Ir": 1000, "I1mr": 1, "D1mr": 2, "D1mw": 3, "ILmr": 1, "DLmr": 0, "DLmw": 1}
    assert instructions.cycle_estimate(events) == 1000 + 10 * 6 + 100 * 2


def test_scrapes_keep_the_timed_benchs_rate_per_row() -> None:
    assert instructions.scrapes(Job("instant", 10_000, None, ()), 3) == 3
    assert instructions.scrapes(Job("stream", 100_000, 10_000, ()), 3) == 30


def test_ratios_are_between_means_over_the_same_starting_points() -> None:
    counts = {
        "bare": Count("bare", [0.0, 0.5], [100, 140]),
        "ours": Count("ours", [0.0, 0.5], [103, 145]),
    }
    assert instructions.ratios(counts) == {"bare": 1.0, "ours": pytest.approx(248 / 240)}


def test_a_count_covers_the_run_repeats_and_includes_the_scrapes(tmp_path: Path) -> None:
    """Twice the rows count about twice the instructions (the count is the run's, not the
    process's start-up, which is a hundred times larger than these runs); the same run
    counted again agrees within half a percent; an instrumented run makes its scrapes inside
    the count and computes the same result."""
    find_binary("valgrind", "valgrind not installed (Debian: apt-get install valgrind)")
    small, large = Job("small", 40, None, ()), Job("large", 80, None, ())
    runs = ((small, "bare"), (small, "bare_2"), (large, "bare"), (small, "ours"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(instructions.count, job, variant, [0.0], tmp_path) for job, variant in runs
        ]
        bare, again, double, ours = (future.result() for future in futures)
    assert bare.rows == again.rows == ours.rows == [40] and double.rows == [80]
    assert bare.instructions[0] > 10_000_000
    assert abs(again.mean() / bare.mean() - 1) < 0.005, (bare, again)
    assert 1.6 < double.mean() / bare.mean() < 2.4, (bare, double)
    assert ours.cost == bare.cost
    assert bare.scrapes == [0] and ours.scrapes == [instructions.SCRAPES_PER_10K_ROWS]
    assert ours.mean() > bare.mean()
