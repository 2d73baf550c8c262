"""Every metric of the contract (section 3), built in one place, read live at collection time.

Counters of rows, tokens and cost are OBSERVABLE: their callbacks add the retained totals of
finished runs to what each active run has added so far (read from its ondine context), so the
per-row hot path does nothing and a scrape mid-run sees the spend grow. When a run ends its final
delta moves into the retained totals under the same lock the callbacks take, so no reader ever
sees a counter go down or count a run twice.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from ondine_otel.config import DEFAULTS
from ondine_otel.telemetry import forksafe, semconv
from ondine_otel.telemetry.aggregation import CallAggregates, CallKey, SeriesRecorder
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.labels import LabelLimiter
from ondine_otel.telemetry.llm_calls import CallSink
from ondine_otel.telemetry.points import PointProducer
from ondine_otel.telemetry.run import RunDelta, RunTelemetry
from ondine_otel.version import __version__

#: GenAI semconv bucket boundaries (gen_ai.client.operation.duration, seconds).
GENAI_DURATION_BUCKETS: Sequence[float] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
#: GenAI semconv bucket boundaries (gen_ai.client.token.usage, tokens).
GENAI_TOKEN_BUCKETS: Sequence[float] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
#: Whole-run and per-stage wall time: batch jobs run from seconds to a day.
RUN_DURATION_BUCKETS: Sequence[float] = (
    1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 43200, 86400,
)  # fmt: skip

_UNKNOWN = "unknown"
#: Seconds one reading of a run's context serves the callbacks of a collection.
COLLECTION_REUSE_S = 0.05


def metric_views() -> list[View]:
    """Bucket Views for a MeterProvider we build; instruments also carry them as advice."""
    return [
        View(
            instrument_name=name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=buckets),
        )
        for name, buckets in (
            (semconv.METRIC_GENAI_DURATION, GENAI_DURATION_BUCKETS),
            (semconv.METRIC_GENAI_TOKENS, GENAI_TOKEN_BUCKETS),
            (semconv.METRIC_RUN_DURATION, RUN_DURATION_BUCKETS),
            (semconv.METRIC_STAGE_DURATION, RUN_DURATION_BUCKETS),
        )
    ]


def _safe(callback: Any) -> Any:
    """A metric callback that reports nothing, once logged, instead of raising into the SDK."""

    def wrapper(options: CallbackOptions) -> list[Observation]:
        try:
            return list(callback(options))
        except Exception as error:  # noqa: BLE001 - a reader must never see our failure
            report(f"collecting {getattr(callback, '__name__', 'a metric')}", error)
            return []

    return wrapper


class _RunLabels:
    """A run's metric labels, fixed when it starts (so a run never splits across series)."""

    def __init__(self, run: RunTelemetry, limiter: LabelLimiter) -> None:
        self.pipeline = limiter.pipeline(run.pipeline_name)
        self.model = limiter.model(run.model or _UNKNOWN)
        self.provider = run.provider or _UNKNOWN
        self.run_id = run.session_id
        # Built once: every collection sums every active run's contributions under these.
        self.base_key = _key(self.base)
        self.priced_key = _key(self.priced)
        self.token_keys = tuple(
            (token_type, _key({**self.priced, semconv.LABEL_TYPE: token_type}))
            for token_type in ("input", "output")
        )

    @property
    def base(self) -> dict[str, str]:
        return {semconv.LABEL_PIPELINE: self.pipeline}

    @property
    def priced(self) -> dict[str, str]:
        return {
            semconv.LABEL_PIPELINE: self.pipeline,
            semconv.LABEL_MODEL: self.model,
            semconv.LABEL_PROVIDER: self.provider,
        }


Key = tuple[tuple[str, str], ...]
#: Attribute sets of one call key: (duration, input tokens, output tokens).
CallAttributes = tuple[dict[str, str], dict[str, str], dict[str, str]]


def _key(attributes: dict[str, str]) -> Key:
    return tuple(sorted(attributes.items()))


#: The active-run gauges (`run_id` label): name, unit, description, how to read one run.
RUN_GAUGES: tuple[tuple[str, str, str, Callable[[RunTelemetry], float | None]], ...] = (
    (semconv.METRIC_RUN_PROGRESS_RATIO, "", "Fraction of the active run's rows done (0..1)",
     lambda run: _ratio(run)),
    (semconv.METRIC_RUN_ROWS_DONE, "", "Rows the active run has done",
     lambda run: run.snapshot(COLLECTION_REUSE_S).rows_processed),
    (semconv.METRIC_RUN_ROWS_EXPECTED, "", "Rows the active run will process",
     lambda run: run.snapshot(COLLECTION_REUSE_S).rows_total),
    (semconv.METRIC_RUN_COST, "", "Spend of the active run (its session) so far, in USD",
     lambda run: run.snapshot(COLLECTION_REUSE_S).cost_usd),
    (semconv.METRIC_RUN_START, "s", "Unix time the active run started",
     lambda run: run.start_wall),
    (semconv.METRIC_RUN_BUDGET, "", "ondine's max_budget of the active run, in USD",
     lambda run: run.budget_usd),
)  # fmt: skip


def _ratio(run: RunTelemetry) -> float:
    now = run.snapshot(COLLECTION_REUSE_S)
    if not now.rows_total:
        return 0.0
    return min(now.rows_processed / now.rows_total, 1.0)


class OndineMetrics:
    """The instruments on one MeterProvider, and the accounting behind the observable ones.

    It is a RunListener: RunTelemetry tells it when runs start, end, checkpoint and finish
    stages; LLM calls are recorded through `recorder_for` (a `CallSink`).

    `produced=True` is for a MeterProvider whose readers ondine-otel built: the GenAI
    histograms and the active-run gauges are then not SDK instruments but points that
    `ondine_otel.telemetry.points` builds when one of those readers collects (cheaper per call,
    and no label set outlives its run). On a provider the application owns they are recorded
    through the SDK.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        label_limit: int = DEFAULTS["label_limit"],
        produced: bool = False,
    ) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter(semconv.INSTRUMENTATION_NAME, __version__)
        self.labels = LabelLimiter(label_limit)
        self.produced = produced
        self.calls = CallAggregates(GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS)
        self.started_ns = time.time_ns()
        self.points = PointProducer(self)
        self._lock = threading.Lock()
        forksafe.track(self)
        self._active: dict[str, tuple[RunTelemetry, _RunLabels]] = {}
        # Finished runs' contributions, per counter and label set.
        self._retained: dict[str, dict[Key, float]] = defaultdict(lambda: defaultdict(float))
        self._pipelines: set[str] = set()
        self._last_success: dict[str, float] = {}
        # (when, totals per counter): the five counter callbacks of one collection share it;
        # a run starting or ending invalidates it.
        self._totals_cache: tuple[float, dict[str, dict[Key, float]]] | None = None

        counter = meter.create_observable_counter
        counter(semconv.METRIC_ROWS_PROCESSED, [_safe(self._rows_processed)], "{row}",
                "Rows done, live during the run")  # fmt: skip
        counter(semconv.METRIC_ROWS_FAILED, [_safe(self._rows_failed)], "{row}",
                "Rows whose output could not be produced")  # fmt: skip
        counter(semconv.METRIC_ROWS_SKIPPED, [_safe(self._rows_skipped)], "{row}",
                "Rows dropped by the error policy")  # fmt: skip
        counter(semconv.METRIC_TOKENS, [_safe(self._tokens)], "{token}",
                "Billable tokens, live during the run")  # fmt: skip
        counter(semconv.METRIC_COST, [_safe(self._cost)], "", "Spend in USD, live during the run")

        gauge = meter.create_observable_gauge
        gauge(semconv.METRIC_RUNS_ACTIVE, [_safe(self._runs_active)], "", "Runs in progress")
        gauge(semconv.METRIC_LAST_SUCCESS, [_safe(self._last_success_cb)], "s",
              "Unix time of the last successful run")  # fmt: skip
        if not produced:
            for name, unit, description, read in RUN_GAUGES:
                gauge(name, [_safe(self._per_run(read))], unit, description)

        self._runs = meter.create_counter(semconv.METRIC_RUNS, "{run}", "Finished runs")
        self._checkpoints = meter.create_counter(
            semconv.METRIC_CHECKPOINTS, "{checkpoint}", "Checkpoint saves"
        )
        self._run_duration = meter.create_histogram(
            semconv.METRIC_RUN_DURATION, "s", "Whole-run wall time",
            explicit_bucket_boundaries_advisory=RUN_DURATION_BUCKETS,
        )  # fmt: skip
        self._stage_duration = meter.create_histogram(
            semconv.METRIC_STAGE_DURATION, "s", "Per-stage wall time",
            explicit_bucket_boundaries_advisory=RUN_DURATION_BUCKETS,
        )  # fmt: skip
        if not produced:
            self._genai_duration = meter.create_histogram(
                semconv.METRIC_GENAI_DURATION, "s", GENAI_DURATION_DESCRIPTION,
                explicit_bucket_boundaries_advisory=GENAI_DURATION_BUCKETS,
            )  # fmt: skip
            self._genai_tokens = meter.create_histogram(
                semconv.METRIC_GENAI_TOKENS, "{token}", GENAI_TOKENS_DESCRIPTION,
                explicit_bucket_boundaries_advisory=GENAI_TOKEN_BUCKETS,
            )  # fmt: skip

    # --- RunListener -------------------------------------------------------------------
    def run_started(self, run: RunTelemetry) -> None:
        labels = _RunLabels(run, self.labels)
        with self._lock:
            self._active[run.session_id] = (run, labels)
            self._pipelines.add(labels.pipeline)
            self._totals_cache = None
        # Alerts use increase(): a series born at 1 on the first failure shows no increase, so
        # every outcome exists at 0 from the pipeline's first run.
        for status in ("success", "error"):
            self._runs.add(0, {**labels.base, semconv.LABEL_STATUS: status})
        for status in ("saved", "failed"):
            self._checkpoints.add(0, {**labels.base, semconv.LABEL_STATUS: status})

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        with self._lock:
            entry = self._active.pop(run.session_id, None)
            if entry is None or entry[0] is not run:
                if entry is not None:  # a newer run of the same session: put it back
                    self._active[run.session_id] = entry
                return
            labels = entry[1]
            for name, key, value in self._contributions(run.added(), labels):
                self._retained[name][key] += value
            self._totals_cache = None
            if status == "success":
                self._last_success[labels.pipeline] = time.time()
        attributes = {**labels.base, semconv.LABEL_STATUS: status}
        self._runs.add(1, attributes)
        self._run_duration.record(duration_s, attributes)

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        labels = self._labels_of(run)
        self._stage_duration.record(
            seconds,
            {**labels.base, semconv.LABEL_STAGE: stage, semconv.LABEL_STATUS: status},
        )

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        labels = self._labels_of(run)
        self._checkpoints.add(
            1, {**labels.base, semconv.LABEL_STATUS: "saved" if saved else "failed"}
        )

    # --- GenAI -----------------------------------------------------------------------------
    def recorder_for(
        self, provider: str | None, model: str, error_type: str | None
    ) -> SeriesRecorder:
        """How to record the calls of one (provider, model, error_type): resolved once per run
        and key, so a call costs a lock and three bisects (produced) or three SDK records with
        prebuilt attribute sets (an application's MeterProvider). The model label is capped."""
        key: CallKey = (provider or _UNKNOWN, self.labels.model(model or _UNKNOWN), error_type)
        if self.produced:
            return self.calls.recorder(key)
        base, as_input, as_output = call_attributes(key)
        duration, tokens = self._genai_duration, self._genai_tokens

        def record(duration_s: float, input_tokens: int | None, output_tokens: int | None) -> None:
            duration.record(duration_s if duration_s > 0 else 0.0, base)
            if error_type is None:
                if input_tokens is not None:
                    tokens.record(input_tokens, as_input)
                if output_tokens is not None:
                    tokens.record(output_tokens, as_output)

        return record

    @property
    def call_sinks(self) -> tuple[CallSink, ...]:
        return (self.recorder_for,)

    # --- accounting ------------------------------------------------------------------------
    def active_runs(self) -> list[tuple[RunTelemetry, dict[str, str]]]:
        """Each active run with its `pipeline` and `run_id` labels (for per-run gauges)."""
        with self._lock:
            active = list(self._active.values())
        return [
            (run, {semconv.LABEL_PIPELINE: labels.pipeline, semconv.LABEL_RUN_ID: labels.run_id})
            for run, labels in active
        ]

    def _labels_of(self, run: RunTelemetry) -> _RunLabels:
        with self._lock:
            entry = self._active.get(run.session_id)
        return entry[1] if entry is not None else _RunLabels(run, self.labels)

    @staticmethod
    def _contributions(delta: RunDelta, labels: _RunLabels) -> Iterable[tuple[str, Key, float]]:
        base = labels.base_key
        yield semconv.METRIC_ROWS_PROCESSED, base, delta.rows_processed
        yield semconv.METRIC_ROWS_FAILED, base, delta.rows_failed
        yield semconv.METRIC_ROWS_SKIPPED, base, delta.rows_skipped
        yield semconv.METRIC_COST, labels.priced_key, delta.cost_usd
        (_, as_input), (_, as_output) = labels.token_keys
        yield semconv.METRIC_TOKENS, as_input, delta.tokens_input
        yield semconv.METRIC_TOKENS, as_output, delta.tokens_output

    def _totals(self, name: str) -> list[Observation]:
        """One counter's totals; all five are summed in one pass per collection."""
        with self._lock:
            cached = self._totals_cache
            now = time.monotonic()
            if cached is None or now - cached[0] >= COLLECTION_REUSE_S:
                totals: dict[str, dict[Key, float]] = {
                    metric: defaultdict(float, retained)
                    for metric, retained in self._retained.items()
                }
                for run, labels in self._active.values():
                    delta = run.added(COLLECTION_REUSE_S)
                    for metric, key, value in self._contributions(delta, labels):
                        totals.setdefault(metric, defaultdict(float))[key] += value
                cached = self._totals_cache = (now, totals)
            chosen = dict(cached[1].get(name, {}))
        return [Observation(value, dict(key)) for key, value in chosen.items()]

    def _rows_processed(self, options: CallbackOptions) -> list[Observation]:
        return self._totals(semconv.METRIC_ROWS_PROCESSED)

    def _rows_failed(self, options: CallbackOptions) -> list[Observation]:
        return self._totals(semconv.METRIC_ROWS_FAILED)

    def _rows_skipped(self, options: CallbackOptions) -> list[Observation]:
        return self._totals(semconv.METRIC_ROWS_SKIPPED)

    def _tokens(self, options: CallbackOptions) -> list[Observation]:
        return self._totals(semconv.METRIC_TOKENS)

    def _cost(self, options: CallbackOptions) -> list[Observation]:
        return self._totals(semconv.METRIC_COST)

    def _runs_active(self, options: CallbackOptions) -> list[Observation]:
        with self._lock:
            counts = dict.fromkeys(self._pipelines, 0)
            for _, labels in self._active.values():
                counts[labels.pipeline] += 1
        return [Observation(n, {semconv.LABEL_PIPELINE: p}) for p, n in counts.items()]

    def _last_success_cb(self, options: CallbackOptions) -> list[Observation]:
        with self._lock:
            items = list(self._last_success.items())
        return [Observation(ts, {semconv.LABEL_PIPELINE: p}) for p, ts in items]

    def _per_run(self, read: Callable[[RunTelemetry], float | None]) -> Any:
        """A gauge callback reporting `read(run)` for each active run, labelled with run_id."""

        def callback(options: CallbackOptions) -> list[Observation]:
            return [
                Observation(value, labels)
                for run, labels in self.active_runs()
                if (value := read(run)) is not None
            ]

        return callback


GENAI_DURATION_DESCRIPTION = "GenAI operation duration"
GENAI_TOKENS_DESCRIPTION = "Number of input and output tokens used"


def call_attributes(key: CallKey) -> CallAttributes:
    """The GenAI semconv attribute sets of a call key: (duration, input tokens, output tokens)."""
    provider, model, error_type = key
    base: dict[str, str] = {
        semconv.GEN_AI_OPERATION_NAME: semconv.SPAN_LLM_OPERATION,
        semconv.GEN_AI_PROVIDER_NAME: provider,
        semconv.GEN_AI_REQUEST_MODEL: model,
    }
    if error_type:
        base[semconv.ERROR_TYPE] = error_type
    return (
        base,
        {**base, semconv.GEN_AI_TOKEN_TYPE: "input"},
        {**base, semconv.GEN_AI_TOKEN_TYPE: "output"},
    )


_BY_PROVIDER: weakref.WeakKeyDictionary[Any, OndineMetrics] = weakref.WeakKeyDictionary()
_BY_PROVIDER_LOCK = threading.Lock()


def metrics_for(
    meter_provider: MeterProvider | None,
    *,
    label_limit: int = DEFAULTS["label_limit"],
    produced: bool = False,
) -> OndineMetrics:
    """The one OndineMetrics of a MeterProvider (its label limit is the first one asked for).

    Instruments are registered once per provider however often instrumentation is switched on
    (the SDK would warn about duplicates and keep the first callbacks anyway).
    """
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _BY_PROVIDER_LOCK:
        found = _BY_PROVIDER.get(provider)
        if found is None:
            found = OndineMetrics(provider, label_limit=label_limit, produced=produced)
            _BY_PROVIDER[provider] = found
        return found
