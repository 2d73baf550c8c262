"""Per-call GenAI numbers aggregated in plain Python, turned into points only when read.

One OTel SDK `Histogram.record` costs 7-12 µs (more with every extra reader), and a GenAI call
needs three of them. A row of an instant job costs ondine ~150 µs, so the SDK path alone adds
~20 %. Here a call costs three `bisect`s and a few integer additions under one lock; readers
that ondine-otel owns receive the same explicit-bucket histograms when they collect.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence

from ondine_otel.telemetry.instruments import CallKey


class BucketCounts:
    """One explicit-bucket histogram: counts per bucket, sum, count, min and max.

    Buckets follow OTel's rule: a value equal to a boundary falls into the bucket it closes
    (`(b[i-1], b[i]]`), which is what `bisect_left` gives.
    """

    __slots__ = ("bounds", "count", "counts", "max", "min", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def copy(self) -> BucketCounts:
        twin = BucketCounts.__new__(BucketCounts)
        twin.bounds = self.bounds
        twin.counts = list(self.counts)
        twin.count, twin.sum, twin.min, twin.max = self.count, self.sum, self.min, self.max
        return twin

    def minus(self, earlier: BucketCounts | None) -> BucketCounts:
        """What was added since `earlier` (delta temporality); min/max stay cumulative."""
        if earlier is None:
            return self.copy()
        delta = self.copy()
        delta.counts = [now - then for now, then in zip(self.counts, earlier.counts, strict=True)]
        delta.count = self.count - earlier.count
        delta.sum = self.sum - earlier.sum
        return delta


class CallSeries:
    """The three GenAI histograms of one (provider, model, error_type)."""

    __slots__ = ("duration", "input_tokens", "output_tokens")

    def __init__(
        self, duration: BucketCounts, input_tokens: BucketCounts, output_tokens: BucketCounts
    ) -> None:
        self.duration = duration
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens

    def copy(self) -> CallSeries:
        return CallSeries(self.duration.copy(), self.input_tokens.copy(), self.output_tokens.copy())


#: Records one call of a fixed key: (duration_s, input_tokens, output_tokens) -> None.
SeriesRecorder = Callable[[float, "int | None", "int | None"], None]


class CallAggregates:
    """Every LLM call of the process, by call key; thread-safe, read by collectors."""

    def __init__(self, duration_bounds: Sequence[float], token_bounds: Sequence[float]) -> None:
        self._duration_bounds = tuple(duration_bounds)
        self._token_bounds = tuple(token_bounds)
        self._series: dict[CallKey, CallSeries] = {}
        self._lock = threading.Lock()

    def recorder(self, key: CallKey) -> SeriesRecorder:
        """A function recording calls of `key`: resolved once, then a lock and three bisects."""
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = CallSeries(
                    BucketCounts(self._duration_bounds),
                    BucketCounts(self._token_bounds),
                    BucketCounts(self._token_bounds),
                )
        duration, inputs, outputs = series.duration, series.input_tokens, series.output_tokens
        failed = key[2] is not None

        def record(duration_s: float, input_tokens: int | None, output_tokens: int | None) -> None:
            with self._lock:  # looked up per call: a forked child gets a fresh lock
                duration.add(duration_s)
                if failed:
                    return
                if input_tokens is not None:
                    inputs.add(input_tokens)
                if output_tokens is not None:
                    outputs.add(output_tokens)

        return record

    def after_fork(self) -> None:
        """A fresh lock in a forked child (a parent thread may have held it)."""
        self._lock = threading.Lock()

    def snapshot(self) -> dict[CallKey, CallSeries]:
        """A consistent copy of every series (what a collector turns into points)."""
        with self._lock:
            return {key: series.copy() for key, series in self._series.items()}
