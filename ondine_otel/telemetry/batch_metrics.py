"""Batch-API job metrics: accounting in plain Python, read when a reader collects.

Owned by one `OndineMetrics` (so they report through the same MeterProviders as the runs).
Counters (jobs submitted and finished, requests submitted and collected) are kept here; a
collected job's tokens and cost go to the metrics' own `ondine.tokens` / `ondine.cost.usd`
totals through `retain`, exactly once (the hooks call `finished` at the terminal registry
transition only). Jobs this process has seen and that are not collected yet are "in flight":
their gauges carry a `run_id` label and disappear when the job is collected.

Every final status and request state of a pipeline exists at 0 from the first job this
process sees, so `increase()` sees the first expired job or failed request (a series born at 1
shows no increase).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ondine_otel.telemetry import instruments, semconv
from ondine_otel.telemetry.batch_job import BatchJob
from ondine_otel.telemetry.labels import LabelLimiter

Key = tuple[tuple[str, str], ...]
#: What a collected job adds to the run metrics' counters: (metric, label key, value).
Contribution = tuple[str, Key, float]
Callback = Callable[[CallbackOptions], list[Observation]]


@runtime_checkable
class BatchListener(Protocol):
    """Told when a process has changed what it knows of a job (a pusher sends it on)."""

    def batch_job_changed(self, pipeline: str, run_id: str, finished: bool) -> None: ...


@dataclasses.dataclass(frozen=True)
class Collected:
    """What a collect of one job returned."""

    status: str
    completed: int
    failed: int
    tokens_input: int
    tokens_output: int
    cost_usd: float


def _key(labels: dict[str, str]) -> Key:
    return tuple(sorted(labels.items()))


class BatchMetrics:
    """Counters and in-flight jobs of one OndineMetrics."""

    def __init__(self, labels: LabelLimiter, retain: Callable[[Iterable[Contribution]], None]):
        self._labels = labels
        self._retain = retain
        self._lock = threading.Lock()
        self._counts: dict[str, dict[Key, float]] = defaultdict(lambda: defaultdict(float))
        self._in_flight: dict[str, BatchJob] = {}

    def _priced(self, job: BatchJob) -> dict[str, str]:
        return {
            semconv.LABEL_PIPELINE: self._labels.pipeline(job.pipeline),
            semconv.LABEL_PROVIDER: job.provider,
            semconv.LABEL_MODEL: self._labels.model(job.model),
        }

    def _add(self, name: str, labels: dict[str, str], value: float) -> None:
        self._counts[name][_key(labels)] += value

    def seen(self, job: BatchJob) -> None:
        """A process looked at the job: its outcomes exist, its gauges follow its state."""
        priced = self._priced(job)
        with self._lock:
            self._add(semconv.METRIC_BATCH_JOBS_SUBMITTED, priced, 0)
            self._add(semconv.METRIC_BATCH_REQUESTS_SUBMITTED, priced, 0)
            for status in instruments.BATCH_JOB_STATUSES:
                self._add(
                    semconv.METRIC_BATCH_JOBS_FINISHED, {**priced, semconv.LABEL_STATUS: status}, 0
                )
            for state in instruments.BATCH_REQUEST_STATES:
                self._add(semconv.METRIC_BATCH_REQUESTS, {**priced, semconv.LABEL_STATE: state}, 0)
            if job.in_flight:
                self._in_flight[job.run_id] = dataclasses.replace(job)
            else:
                self._in_flight.pop(job.run_id, None)

    def submitted(self, job: BatchJob) -> None:
        self.seen(job)
        priced = self._priced(job)
        with self._lock:
            self._add(semconv.METRIC_BATCH_JOBS_SUBMITTED, priced, 1)
            self._add(semconv.METRIC_BATCH_REQUESTS_SUBMITTED, priced, job.requests)

    def finished(self, job: BatchJob, collected: Collected) -> None:
        """The job's results were collected and the registry says so: count them, once."""
        self.seen(job)
        priced = self._priced(job)
        with self._lock:
            status = {**priced, semconv.LABEL_STATUS: collected.status}
            self._add(semconv.METRIC_BATCH_JOBS_FINISHED, status, 1)
            for state, value in (("completed", collected.completed), ("failed", collected.failed)):
                labels = {**priced, semconv.LABEL_STATE: state}
                self._add(semconv.METRIC_BATCH_REQUESTS, labels, value)
            self._in_flight.pop(job.run_id, None)
        self._retain(
            [
                (semconv.METRIC_TOKENS, _key({**priced, semconv.LABEL_TYPE: "input"}),
                 collected.tokens_input),
                (semconv.METRIC_TOKENS, _key({**priced, semconv.LABEL_TYPE: "output"}),
                 collected.tokens_output),
                (semconv.METRIC_COST, _key(priced), collected.cost_usd),
            ]
        )  # fmt: skip

    # --- collection ------------------------------------------------------------------------
    def observe_counter(self, name: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            with self._lock:
                items = list(self._counts.get(name, {}).items())
            return [Observation(value, dict(key)) for key, value in items]

        return observe

    def observe_gauge(self, name: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            with self._lock:
                jobs = list(self._in_flight.values())
            return [point for job in jobs for point in self._gauge_points(name, job)]

        return observe

    def _gauge_points(self, name: str, job: BatchJob) -> list[Observation]:
        labels = {
            semconv.LABEL_PIPELINE: self._labels.pipeline(job.pipeline),
            semconv.LABEL_RUN_ID: job.run_id,
        }
        if name == semconv.METRIC_BATCH_JOB_REQUESTS:
            return [
                Observation(value, {**labels, semconv.LABEL_STATE: state})
                for state, value in (
                    ("total", job.requests), ("completed", job.completed), ("failed", job.failed)
                )
            ]  # fmt: skip
        value = {
            semconv.METRIC_BATCH_JOB_SUBMITTED: job.submitted_at,
            semconv.METRIC_BATCH_JOB_DEADLINE: job.deadline,
            semconv.METRIC_BATCH_JOB_CHECKED: job.checked_at,
            semconv.METRIC_BATCH_JOB_ESTIMATED_COST: job.estimated_cost_usd,
        }.get(name)
        return [] if value is None else [Observation(value, labels)]

    def bind(self, meter: Meter, safe: Callable[[Callback], Any]) -> None:
        """This accounting's instruments on one meter (`safe` keeps a failure from the SDK)."""
        for name, unit, description in instruments.BATCH_COUNTERS:
            meter.create_observable_counter(
                name, [safe(self.observe_counter(name))], unit, description
            )
        for name, unit, description in instruments.BATCH_GAUGES:
            meter.create_observable_gauge(name, [safe(self.observe_gauge(name))], unit, description)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
