"""Every metric instrument of the contract in one place: names, units, buckets, attribute sets.

Like opentelemetry-python-contrib's `instruments.py` modules: the rest of the code asks here
what an instrument is called and how its points are labelled, so the SDK path, the produced
points and the fallback all describe the same series.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from ondine_otel.telemetry import semconv

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

GENAI_DURATION_DESCRIPTION = "GenAI operation duration"
GENAI_TOKENS_DESCRIPTION = "Number of input and output tokens used"

#: (name, unit, description) of the observable counters read from the runs at collection.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    (semconv.METRIC_ROWS_PROCESSED, "{row}", "Rows done, live during the run"),
    (semconv.METRIC_ROWS_FAILED, "{row}", "Rows whose output could not be produced"),
    (semconv.METRIC_ROWS_SKIPPED, "{row}", "Rows dropped by the error policy"),
    (semconv.METRIC_TOKENS, "{token}", "Billable tokens, live during the run"),
    (semconv.METRIC_COST, "", "Spend in USD, live during the run"),
)

#: (name, unit, description) of the active-run gauges (`run_id` label; active runs only).
RUN_GAUGES: tuple[tuple[str, str, str], ...] = (
    (semconv.METRIC_RUN_PROGRESS_RATIO, "", "Fraction of the active run's rows done (0..1)"),
    (semconv.METRIC_RUN_ROWS_DONE, "", "Rows the active run has done"),
    (semconv.METRIC_RUN_ROWS_EXPECTED, "", "Rows the active run will process"),
    (semconv.METRIC_RUN_COST, "", "Spend of the active run (its session) so far, in USD"),
    (semconv.METRIC_RUN_START, "s", "Unix time the active run started"),
    (semconv.METRIC_RUN_BUDGET, "", "ondine's max_budget of the active run, in USD"),
)

#: (name, unit, description) of the Batch-API job counters (labels pipeline, provider, model).
BATCH_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (semconv.METRIC_BATCH_JOBS_SUBMITTED, "{job}", "Batch-API jobs submitted"),
    (semconv.METRIC_BATCH_JOBS_FINISHED, "{job}", "Batch-API jobs collected, by final status"),
    (semconv.METRIC_BATCH_REQUESTS_SUBMITTED, "{request}", "Requests sent in Batch-API jobs"),
    (semconv.METRIC_BATCH_REQUESTS, "{request}", "Collected Batch-API requests, by state"),
)

#: (name, unit, description) of the gauges of Batch-API jobs in flight (`run_id` label).
BATCH_GAUGES: tuple[tuple[str, str, str], ...] = (
    (semconv.METRIC_BATCH_JOB_REQUESTS, "{request}", "Requests of the job, by state"),
    (semconv.METRIC_BATCH_JOB_SUBMITTED, "s", "Unix time the job was submitted"),
    (semconv.METRIC_BATCH_JOB_DEADLINE, "s", "Unix time the job's completion window ends"),
    (semconv.METRIC_BATCH_JOB_CHECKED, "s", "Unix time a process last looked at the job"),
    (semconv.METRIC_BATCH_JOB_ESTIMATED_COST, "", "Estimated cost of the job in USD"),
)

#: Final statuses of a collected job (every one exists at 0 once a pipeline submits).
BATCH_JOB_STATUSES: tuple[str, ...] = ("succeeded", "partial", "failed", "expired", "cancelled")
#: States of a job's requests: the counters count completed and failed, the gauges all three.
BATCH_REQUEST_STATES: tuple[str, ...] = ("completed", "failed")

#: (provider, model, error_type) of a call, as the metric labels report them.
CallKey = tuple[str, str, str | None]
#: Attribute sets of one call key: (duration, input tokens, output tokens).
CallAttributes = tuple[dict[str, str], dict[str, str], dict[str, str]]


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
