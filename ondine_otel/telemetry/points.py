"""Points a reader collects besides the SDK's: GenAI histograms and the active-run gauges.

Built from the metrics' accounting (its call aggregates and its reading of the live runs) at
the moment a reader collects, so the per-call path never touches the SDK and a finished run's
`run_id` series simply stops being reported (the SDK would keep its label set for the life of
the process and stop at 2,000 of them).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
)

from ondine_otel.telemetry import instruments, semconv
from ondine_otel.telemetry.aggregation import BucketCounts, CallAggregates, CallSeries
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.instruments import CallKey


class _Reading(Protocol):
    def gauge(self, name: str) -> list[tuple[dict[str, str], float]]: ...


class PointSource(Protocol):
    """What the points are built from (the metrics' accounting)."""

    calls: CallAggregates
    started_ns: int

    def reading(self) -> _Reading: ...

    def fold_calls(self) -> None: ...


class PointProducer:
    """Turns the metrics' plain-Python state into SDK metric points, per reader."""

    def __init__(self, source: PointSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        # Delta readers: what each one was last given, and when.
        self._previous: dict[int, tuple[int, dict[CallKey, CallSeries]]] = {}

    def produce(self, reader_id: int, temporality: AggregationTemporality) -> list[Metric]:
        """Every produced metric now; never raises (a reader must not see our failure)."""
        try:
            now = time.time_ns()
            return [
                *self._call_histograms(reader_id, temporality, now),
                *self._run_gauges(now),
            ]
        except Exception as error:  # noqa: BLE001
            report("building the GenAI and active-run points", error)
            return []

    def _call_histograms(
        self, reader_id: int, temporality: AggregationTemporality, now: int
    ) -> list[Metric]:
        self.source.fold_calls()
        series = self.source.calls.snapshot()
        start = self.source.started_ns
        previous: dict[CallKey, CallSeries] = {}
        if temporality is AggregationTemporality.DELTA:
            with self._lock:
                start, previous = self._previous.get(reader_id, (start, {}))
                self._previous[reader_id] = (now, series)
        durations: list[HistogramDataPoint] = []
        tokens: list[HistogramDataPoint] = []
        for key, current in series.items():
            earlier = previous.get(key)
            base, as_input, as_output = instruments.call_attributes(key)
            befores: tuple[BucketCounts | None, ...] = (
                (earlier.duration, earlier.input_tokens, earlier.output_tokens)
                if earlier is not None
                else (None, None, None)
            )
            for into, attributes, counts, before in (
                (durations, base, current.duration, befores[0]),
                (tokens, as_input, current.input_tokens, befores[1]),
                (tokens, as_output, current.output_tokens, befores[2]),
            ):
                if counts.count:
                    into.append(_histogram_point(counts.minus(before), attributes, start, now))
        return [
            Metric(
                semconv.METRIC_GENAI_DURATION,
                instruments.GENAI_DURATION_DESCRIPTION,
                "s",
                Histogram(durations, temporality),
            ),
            Metric(
                semconv.METRIC_GENAI_TOKENS,
                instruments.GENAI_TOKENS_DESCRIPTION,
                "{token}",
                Histogram(tokens, temporality),
            ),
        ]

    def _run_gauges(self, now: int) -> list[Metric]:
        reading = self.source.reading()
        produced: list[Metric] = []
        for name, unit, description in instruments.RUN_GAUGES:
            points = [
                NumberDataPoint(labels, now, now, value) for labels, value in reading.gauge(name)
            ]
            if points:
                produced.append(Metric(name, description, unit, Gauge(points)))
        return produced


def _histogram_point(
    counts: BucketCounts, attributes: dict[str, str], start: int, now: int
) -> HistogramDataPoint:
    return HistogramDataPoint(
        attributes=attributes,
        start_time_unix_nano=start,
        time_unix_nano=now,
        count=counts.count,
        sum=counts.sum,
        bucket_counts=tuple(counts.counts),
        explicit_bounds=counts.bounds,
        min=counts.min,
        max=counts.max,
    )
