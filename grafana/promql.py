"""Prometheus series names and the PromQL building blocks the dashboards use.

Names are derived from the instrument names in `semconv` the way the OpenTelemetry Prometheus
exporter derives them (dots to underscores, unit and `_total` suffixes) and checked against
`semconv.PROMETHEUS_NAMES`, so a renamed instrument breaks generation instead of a panel.
"""

from __future__ import annotations

from ondine_otel.telemetry import semconv


def prometheus_name(instrument: str, suffix: str = "") -> str:
    """The contract's Prometheus name of `instrument`; raises if the contract lacks it."""
    name = instrument.replace(".", "_") + suffix
    if name not in semconv.PROMETHEUS_NAMES:
        raise ValueError(f"{name!r} (from {instrument!r}) is not in semconv.PROMETHEUS_NAMES")
    return name


def label(attribute: str) -> str:
    """Prometheus label name of an OpenTelemetry attribute (`gen_ai.request.model`...)."""
    return attribute.replace(".", "_")


ROWS_PROCESSED = prometheus_name(semconv.METRIC_ROWS_PROCESSED, "_total")
ROWS_FAILED = prometheus_name(semconv.METRIC_ROWS_FAILED, "_total")
ROWS_SKIPPED = prometheus_name(semconv.METRIC_ROWS_SKIPPED, "_total")
TOKENS = prometheus_name(semconv.METRIC_TOKENS, "_total")
COST = prometheus_name(semconv.METRIC_COST, "_total")
RUNS = prometheus_name(semconv.METRIC_RUNS, "_total")
CHECKPOINTS = prometheus_name(semconv.METRIC_CHECKPOINTS, "_total")
RUN_DURATION = prometheus_name(semconv.METRIC_RUN_DURATION, "_seconds")
STAGE_DURATION = prometheus_name(semconv.METRIC_STAGE_DURATION, "_seconds")
RUNS_ACTIVE = prometheus_name(semconv.METRIC_RUNS_ACTIVE)
RUN_PROGRESS = prometheus_name(semconv.METRIC_RUN_PROGRESS_RATIO)
RUN_ROWS_DONE = prometheus_name(semconv.METRIC_RUN_ROWS_DONE)
RUN_ROWS_EXPECTED = prometheus_name(semconv.METRIC_RUN_ROWS_EXPECTED)
RUN_COST = prometheus_name(semconv.METRIC_RUN_COST)
RUN_START = prometheus_name(semconv.METRIC_RUN_START, "_seconds")
RUN_BUDGET = prometheus_name(semconv.METRIC_RUN_BUDGET)
LAST_SUCCESS = prometheus_name(semconv.METRIC_LAST_SUCCESS, "_seconds")
GENAI_DURATION = prometheus_name(semconv.METRIC_GENAI_DURATION, "_seconds")
GENAI_TOKENS = prometheus_name(semconv.METRIC_GENAI_TOKENS)

PIPELINE = semconv.LABEL_PIPELINE
MODEL = semconv.LABEL_MODEL
TYPE = semconv.LABEL_TYPE
STATUS = semconv.LABEL_STATUS
STAGE = semconv.LABEL_STAGE
RUN_ID = semconv.LABEL_RUN_ID
GENAI_MODEL = label(semconv.GEN_AI_REQUEST_MODEL)
GENAI_PROVIDER = label(semconv.GEN_AI_PROVIDER_NAME)
ERROR_TYPE = label(semconv.ERROR_TYPE)
JOB = "job"  # Prometheus' own target label: which source (scrape job or Pushgateway) to show

RATE = "$__rate_interval"
RANGE = "$__range"
RUN_KEY = f"{PIPELINE}, {RUN_ID}"


def selector(*matchers: str, model: str | None = None, **equal: str) -> str:
    """`{job="$job",pipeline=~"$pipeline",...}`: every ondine series is filtered by source.

    `matchers` are extra raw matchers (`error_type!=""`). `model` names the label that carries
    the model: `model` on ondine counters, `gen_ai_request_model` on the GenAI histograms
    (which have no pipeline label, so they are not filtered by pipeline).
    """
    parts = [f'{JOB}="$job"']
    if model != GENAI_MODEL:
        parts.append(f'{PIPELINE}=~"$pipeline"')
    if model is not None:
        parts.append(f'{model}=~"$model"')
    parts.extend(f'{key}="{value}"' for key, value in equal.items())
    parts.extend(matchers)
    return "{" + ",".join(parts) + "}"


def in_window(counter: str, sel: str, window: str = RANGE) -> str:
    """Per-series growth of `counter` in `window`, counting a series born inside it from 0.

    `increase()` needs two samples and reads only the growth after the first one, so a job
    that was first scraped (or pushed) already part-way through would be undercounted. A series
    that did not exist `window` ago is new: all of its value was earned inside the window. The
    same rule as the recording rules in deploy/prometheus/rules.
    """
    series = f"{counter}{sel}"
    return (
        f"(max_over_time({series}[{window}]) unless {series} offset {window})"
        f" or increase({series}[{window}])"
    )


def total_in_window(counter: str, sel: str, by: str = "", window: str = RANGE) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({in_window(counter, sel, window)})"


def rate(counter: str, sel: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({counter}{sel}[{RATE}]))"


def quantile(q: float, histogram: str, sel: str, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, {by}) "
        f"(rate({histogram}_bucket{sel}[{RATE}])))"
    )


def per_run(gauge: str) -> str:
    """An active-run gauge per (pipeline, run_id); `max` folds copies of one run into one."""
    return f"max by ({RUN_KEY}) ({gauge}{selector()})"


def projected_cost() -> str:
    """Cost so far over progress, progress clamped at 1 % (as the budget alert's rule)."""
    return f"{per_run(RUN_COST)} / clamp_min({per_run(RUN_PROGRESS)}, 0.01)"
