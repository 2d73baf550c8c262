"""The contract's metrics (section 3): accounting in plain Python, read when a reader collects.

Counters of rows, tokens and cost are OBSERVABLE: their callbacks add the retained totals of
finished runs to what each active run has added so far (read from its ondine context), so the
per-row hot path does nothing and a scrape mid-run sees the spend grow. When a run ends, its
final delta moves into the retained totals under the lock the collections take, so no reader
ever sees a counter go down or count a run twice. Active runs are not copied here: they are
read from the run registry.

Per LLM call, `CallAggregates` counts the GenAI histograms (a lock and three bisects); the
`PointProducer` turns them, and the active-run gauges, into points when a reader collects.
Each MeterProvider is bound once (`bind`): its readers take the produced points through the
export bridge, or, where the bridge cannot attach, `SdkCallInstruments` records the same series
through the SDK.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from ondine_otel.config import DEFAULTS
from ondine_otel.telemetry import instruments, semconv
from ondine_otel.telemetry.aggregation import CallAggregates, SeriesRecorder
from ondine_otel.telemetry.batch_metrics import BatchMetrics, Contribution
from ondine_otel.telemetry.call_record import CallFields
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.labels import LabelLimiter
from ondine_otel.telemetry.points import PointProducer
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RunDelta, RunTelemetry
from ondine_otel.telemetry.snapshot import RunSnapshot
from ondine_otel.version import __version__

_UNKNOWN = "unknown"
#: Seconds one reading of the active runs serves the callbacks of one collection.
COLLECTION_REUSE_S = 0.05

Key = tuple[tuple[str, str], ...]


def _key(attributes: dict[str, str]) -> Key:
    return tuple(sorted(attributes.items()))


def _safe(callback: Callable[[CallbackOptions], Iterable[Observation]]) -> Any:
    """A metric callback that reports nothing, once logged, instead of raising into the SDK."""

    def wrapper(options: CallbackOptions) -> list[Observation]:
        try:
            return list(callback(options))
        except Exception as error:  # noqa: BLE001 - a reader must never see our failure
            report("collecting ondine-otel metrics", error)
            return []

    return wrapper


class RunLabels:
    """A run's metric labels, fixed when it starts (so a run never splits across series)."""

    def __init__(self, run: RunTelemetry, limiter: LabelLimiter) -> None:
        self.pipeline = limiter.pipeline(run.pipeline_name)
        self.model = limiter.model(run.model or _UNKNOWN)
        self.provider = run.provider or _UNKNOWN
        self.run_id = run.session_id
        self.base = {semconv.LABEL_PIPELINE: self.pipeline}
        self.per_run = {semconv.LABEL_PIPELINE: self.pipeline, semconv.LABEL_RUN_ID: self.run_id}
        priced = {
            **self.base,
            semconv.LABEL_MODEL: self.model,
            semconv.LABEL_PROVIDER: self.provider,
        }
        # Built once: every collection sums every active run's contributions under these.
        self.base_key = _key(self.base)
        self.priced_key = _key(priced)
        self.input_key = _key({**priced, semconv.LABEL_TYPE: "input"})
        self.output_key = _key({**priced, semconv.LABEL_TYPE: "output"})

    def contributions(self, delta: RunDelta) -> Iterable[tuple[str, Key, float]]:
        yield semconv.METRIC_ROWS_PROCESSED, self.base_key, delta.rows_processed
        yield semconv.METRIC_ROWS_FAILED, self.base_key, delta.rows_failed
        yield semconv.METRIC_ROWS_SKIPPED, self.base_key, delta.rows_skipped
        yield semconv.METRIC_COST, self.priced_key, delta.cost_usd
        yield semconv.METRIC_TOKENS, self.input_key, delta.tokens_input
        yield semconv.METRIC_TOKENS, self.output_key, delta.tokens_output


@dataclass(frozen=True)
class ActiveRun:
    """One active run as one collection saw it."""

    run: RunTelemetry
    labels: RunLabels
    now: RunSnapshot


@dataclass(frozen=True)
class Reading:
    """Everything one collection reports, read once and shared by all its callbacks."""

    taken_at: float
    active: list[ActiveRun]
    totals: dict[str, dict[Key, float]]
    runs_active: dict[str, int] = field(default_factory=dict)

    def gauge(self, name: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of one active-run gauge, for every active run that has a value."""
        points = []
        for item in self.active:
            value = _gauge_value(name, item)
            if value is not None:
                points.append((item.labels.per_run, value))
        return points


def _gauge_value(name: str, item: ActiveRun) -> float | None:
    now = item.now
    if name == semconv.METRIC_RUN_PROGRESS_RATIO:
        return min(now.rows_processed / now.rows_total, 1.0) if now.rows_total else 0.0
    if name == semconv.METRIC_RUN_ROWS_DONE:
        return now.rows_processed
    if name == semconv.METRIC_RUN_ROWS_EXPECTED:
        return now.rows_total
    if name == semconv.METRIC_RUN_COST:
        return now.cost_usd
    if name == semconv.METRIC_RUN_START:
        return item.run.start_wall
    if name == semconv.METRIC_RUN_BUDGET:
        return item.run.budget_usd
    return None


class _Binding:
    """The SDK instruments of one MeterProvider: observable ones read the accounting, the
    synchronous ones are recorded once per run, stage and checkpoint (never per call)."""

    def __init__(self, metrics: OndineMetrics, meter: Meter) -> None:
        for name, unit, description in instruments.COUNTERS:
            meter.create_observable_counter(
                name, [_safe(metrics.counter_callback(name))], unit, description
            )
        meter.create_observable_gauge(
            semconv.METRIC_RUNS_ACTIVE, [_safe(metrics.observe_runs_active)], "",
            "Runs in progress",
        )  # fmt: skip
        meter.create_observable_gauge(
            semconv.METRIC_LAST_SUCCESS, [_safe(metrics.observe_last_success)], "s",
            "Unix time of the last successful run",
        )  # fmt: skip
        self.runs = meter.create_counter(semconv.METRIC_RUNS, "{run}", "Finished runs")
        self.checkpoints = meter.create_counter(
            semconv.METRIC_CHECKPOINTS, "{checkpoint}", "Checkpoint saves"
        )
        self.run_duration = meter.create_histogram(
            semconv.METRIC_RUN_DURATION, "s", "Whole-run wall time",
            explicit_bucket_boundaries_advisory=instruments.RUN_DURATION_BUCKETS,
        )  # fmt: skip
        self.stage_duration = meter.create_histogram(
            semconv.METRIC_STAGE_DURATION, "s", "Per-stage wall time",
            explicit_bucket_boundaries_advisory=instruments.RUN_DURATION_BUCKETS,
        )  # fmt: skip
        metrics.batch.bind(meter, _safe)


class SdkCallInstruments:
    """The GenAI histograms and active-run gauges through the SDK, for a MeterProvider whose
    readers cannot take produced points (an SDK without the reader hook the bridge needs).

    Same names, buckets and labels as the produced points, at the SDK's per-call price.
    """

    def __init__(self, metrics: OndineMetrics, meter: Meter) -> None:
        self._labels = metrics.labels
        self._duration = meter.create_histogram(
            semconv.METRIC_GENAI_DURATION, "s", instruments.GENAI_DURATION_DESCRIPTION,
            explicit_bucket_boundaries_advisory=instruments.GENAI_DURATION_BUCKETS,
        )  # fmt: skip
        self._tokens = meter.create_histogram(
            semconv.METRIC_GENAI_TOKENS, "{token}", instruments.GENAI_TOKENS_DESCRIPTION,
            explicit_bucket_boundaries_advisory=instruments.GENAI_TOKEN_BUCKETS,
        )  # fmt: skip
        for name, unit, description in instruments.RUN_GAUGES:
            meter.create_observable_gauge(
                name, [_safe(metrics.run_gauge_callback(name))], unit, description
            )

    def recorder_for(
        self, provider: str | None, model: str, error_type: str | None
    ) -> SeriesRecorder:
        """Three SDK records per call, with attribute sets built once per run and key."""
        key = (provider or _UNKNOWN, self._labels.model(model or _UNKNOWN), error_type)
        base, as_input, as_output = instruments.call_attributes(key)
        duration, tokens = self._duration, self._tokens

        def record(calls: Sequence[CallFields]) -> None:
            for start_ns, end_ns, _, _, input_tokens, output_tokens in calls:
                duration.record(max(end_ns - start_ns, 0) / 1e9, base)
                if error_type is None:
                    if input_tokens is not None:
                        tokens.record(input_tokens, as_input)
                    if output_tokens is not None:
                        tokens.record(output_tokens, as_output)

        return record


class OndineMetrics:
    """One set of accounting (finished-run totals, per-call aggregates) and the MeterProviders
    it reports to. A RunListener: runs tell it when they start, end, checkpoint and finish
    stages; each LLM call reaches it through `call_sinks`."""

    def __init__(
        self, registry: RunRegistry, *, label_limit: int = DEFAULTS["label_limit"]
    ) -> None:
        self.registry = registry
        self.labels = LabelLimiter(label_limit)
        self.calls = CallAggregates(
            instruments.GENAI_DURATION_BUCKETS, instruments.GENAI_TOKEN_BUCKETS
        )
        self.started_ns = time.time_ns()
        self.points = PointProducer(self)
        self._lock = threading.Lock()
        self._bindings: list[_Binding] = []
        self._fallbacks: list[SdkCallInstruments] = []
        self._providers: list[MeterProvider] = []
        # Finished runs' contributions, per counter and label set.
        self._retained: dict[str, dict[Key, float]] = defaultdict(lambda: defaultdict(float))
        self._pipelines: set[str] = set()
        self._last_success: dict[str, float] = {}
        self._reading: Reading | None = None
        self.call_sinks: tuple[Callable[..., SeriesRecorder], ...] = (self._recorder_for,)
        #: Batch-API jobs, reported through the same providers (tokens and cost: `retain`).
        self.batch = BatchMetrics(self.labels, self.retain)

    # --- destinations --------------------------------------------------------------------
    def bind(self, provider: MeterProvider, *, produced: bool) -> bool:
        """Report to `provider` too (once per provider). `produced`: its readers take our
        points; else the GenAI histograms and run gauges go through the SDK. False if bound."""
        with self._lock:
            if any(bound is provider for bound in self._providers):
                return False
            self._providers.append(provider)
        meter = provider.get_meter(semconv.INSTRUMENTATION_NAME, __version__)
        self._bindings.append(_Binding(self, meter))
        if not produced:
            fallback = SdkCallInstruments(self, meter)
            self._fallbacks.append(fallback)
            self.call_sinks = (*self.call_sinks, fallback.recorder_for)
        return True

    @property
    def providers(self) -> list[MeterProvider]:
        return list(self._providers)

    def after_fork(self) -> None:
        """In a forked child: fresh locks (a parent thread may have held them)."""
        self._lock = threading.Lock()
        self.calls.after_fork()
        self.labels.after_fork()
        self.batch.after_fork()

    # --- RunListener -------------------------------------------------------------------
    def run_started(self, run: RunTelemetry) -> None:
        labels = run.labels = RunLabels(run, self.labels)
        with self._lock:
            self._pipelines.add(labels.pipeline)
            self._reading = None
        # Alerts use increase(): a series born at 1 on the first failure shows no increase, so
        # every outcome exists at 0 from the pipeline's first run.
        for binding in self._bindings:
            for status in ("success", "error"):
                binding.runs.add(0, {**labels.base, semconv.LABEL_STATUS: status})
            for status in ("saved", "failed"):
                binding.checkpoints.add(0, {**labels.base, semconv.LABEL_STATUS: status})

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        labels = self._labels_of(run)
        with self._lock:
            if run.counted:
                return
            for name, key, value in labels.contributions(run.added()):
                self._retained[name][key] += value
            run.counted = True
            self._reading = None
            if status == "success":
                self._last_success[labels.pipeline] = time.time()
        attributes = {**labels.base, semconv.LABEL_STATUS: status}
        for binding in self._bindings:
            binding.runs.add(1, attributes)
            binding.run_duration.record(duration_s, attributes)

    def retain(self, contributions: Iterable[Contribution]) -> None:
        """Add work finished outside a run (a collected batch job) to the counters' totals."""
        with self._lock:
            for name, key, value in contributions:
                self._retained[name][key] += value
            self._reading = None

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        attributes = {
            **self._labels_of(run).base,
            semconv.LABEL_STAGE: stage,
            semconv.LABEL_STATUS: status,
        }
        for binding in self._bindings:
            binding.stage_duration.record(seconds, attributes)

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        status = "saved" if saved else "failed"
        attributes = {**self._labels_of(run).base, semconv.LABEL_STATUS: status}
        for binding in self._bindings:
            binding.checkpoints.add(1, attributes)

    def _labels_of(self, run: RunTelemetry) -> RunLabels:
        labels = run.labels
        return labels if isinstance(labels, RunLabels) else RunLabels(run, self.labels)

    # --- LLM calls -------------------------------------------------------------------------
    def _recorder_for(
        self, provider: str | None, model: str, error_type: str | None
    ) -> SeriesRecorder:
        """Resolved once per run and key; a call then costs a lock and three bisects."""
        return self.calls.recorder(
            (provider or _UNKNOWN, self.labels.model(model or _UNKNOWN), error_type)
        )

    # --- collection ------------------------------------------------------------------------
    def fold_calls(self) -> None:
        """Bring every run's recent calls into the aggregates (runs fold in batches), so a
        collection reports each call made before it."""
        for run in self.registry.runs():
            run.llm.fold()

    def reading(self) -> Reading:
        """What a collection reports now: the callbacks of one collection (and its produced
        points) share one reading, because each reading of a run takes ondine's lock. Runs
        fold their calls first: where the calls go to SDK instruments (`SdkCallInstruments`),
        this is the collection's only hook to bring them in (produced points fold their own)."""
        self.fold_calls()
        with self._lock:
            cached = self._reading
            now = time.monotonic()
            if cached is not None and now - cached.taken_at < COLLECTION_REUSE_S:
                return cached
            totals: dict[str, dict[Key, float]] = {
                metric: dict(retained) for metric, retained in self._retained.items()
            }
            active: list[ActiveRun] = []
            counts = dict.fromkeys(self._pipelines, 0)
            for run in self.registry.runs():
                if self not in run.listeners or run.counted:
                    continue
                labels = self._labels_of(run)
                readings = run.readings()
                active.append(ActiveRun(run, labels, readings[0]))
                counts[labels.pipeline] = counts.get(labels.pipeline, 0) + 1
                for metric, key, value in labels.contributions(run.added(readings)):
                    into = totals.setdefault(metric, {})
                    into[key] = into.get(key, 0.0) + value
            reading = self._reading = Reading(now, active, totals, counts)
            return reading

    def counter_callback(self, name: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            totals = self.reading().totals.get(name, {})
            return [Observation(value, dict(key)) for key, value in totals.items()]

        return observe

    def run_gauge_callback(self, name: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            return [Observation(value, labels) for labels, value in self.reading().gauge(name)]

        return observe

    def observe_runs_active(self, options: CallbackOptions) -> list[Observation]:
        counts = self.reading().runs_active
        return [Observation(n, {semconv.LABEL_PIPELINE: p}) for p, n in counts.items()]

    def observe_last_success(self, options: CallbackOptions) -> list[Observation]:
        with self._lock:
            items = list(self._last_success.items())
        return [Observation(ts, {semconv.LABEL_PIPELINE: p}) for p, ts in items]
