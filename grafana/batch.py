"""The overview's row for Batch-API jobs: jobs in flight (from their gauges), and what the
collected ones came to (from the batch counters).

Same rules as the rest of the overview: one source (the `job` variable) per query, counter
windows that count a series born inside the range from 0. Thresholds are the batch alerts'
(deploy/prometheus/rules/ondine-batch.yml): half the requests failed, the completion window
ended.
"""

from __future__ import annotations

from typing import Any

from ondine_otel.telemetry import semconv

from . import layout as g
from . import promql as q

SOURCE = (
    " Source: the series of the selected job only (scrape or Pushgateway, never both added up)."
)
#: OndineBatchRequestsMostlyFailed fires above this share of failed requests.
MOSTLY_FAILED = 0.5

JOBS_SUBMITTED = q.prometheus_name(semconv.METRIC_BATCH_JOBS_SUBMITTED, "_total")
REQUESTS_SUBMITTED = q.prometheus_name(semconv.METRIC_BATCH_REQUESTS_SUBMITTED, "_total")
JOBS_FINISHED = q.prometheus_name(semconv.METRIC_BATCH_JOBS_FINISHED, "_total")
REQUESTS = q.prometheus_name(semconv.METRIC_BATCH_REQUESTS, "_total")
JOB_REQUESTS = q.prometheus_name(semconv.METRIC_BATCH_JOB_REQUESTS)
JOB_SUBMITTED = q.prometheus_name(semconv.METRIC_BATCH_JOB_SUBMITTED, "_seconds")
JOB_DEADLINE = q.prometheus_name(semconv.METRIC_BATCH_JOB_DEADLINE, "_seconds")
JOB_CHECKED = q.prometheus_name(semconv.METRIC_BATCH_JOB_CHECKED, "_seconds")
JOB_COST = q.prometheus_name(semconv.METRIC_BATCH_JOB_ESTIMATED_COST)
STATE = semconv.LABEL_STATE


def per_job(gauge: str, **equal: str) -> str:
    """A job's gauge per (pipeline, run_id); `max` folds copies of one job into one."""
    return f"max by ({q.RUN_KEY}) ({gauge}{q.selector(**equal)})"


def jobs_in_flight_table() -> g.Json:
    columns: list[tuple[str, str, dict[str, Any]]] = [
        ("Requests", per_job(JOB_REQUESTS, state="total"), {"unit": "short", "decimals": 0}),
        ("Completed", per_job(JOB_REQUESTS, state="completed"), {"unit": "short", "decimals": 0}),
        ("Failed", per_job(JOB_REQUESTS, state="failed"), {"unit": "short", "decimals": 0}),
        ("Age", f"time() - {per_job(JOB_SUBMITTED)}", {"unit": "s"}),
        ("Window left", f"{per_job(JOB_DEADLINE)} - time()", {
            "unit": "s", "color": {"mode": "thresholds"},
            "thresholds": g.steps(("red", None), ("green", 0)),
            "custom__cellOptions": {"type": "color-text"},
        }),
        ("Last checked", f"time() - {per_job(JOB_CHECKED)}", {"unit": "s"}),
        ("Estimated cost", per_job(JOB_COST), {"unit": "currencyUSD"}),
    ]
    refs = "ABCDEFG"
    rename = {f"Value #{refs[i]}": name for i, (name, _, _) in enumerate(columns)}
    order = {q.PIPELINE: 0, q.RUN_ID: 1} | {name: i + 2 for i, (name, _, _) in enumerate(columns)}
    return g.table(
        "Batch jobs in flight",
        "Batch-API jobs submitted and not collected yet, one row each (their run_id is "
        "ondine's run registry id, attribute ondine.batch.run_id of the submit span): requests "
        "as the provider last reported them, age, time left in the 24 h completion window (red "
        "once it has ended: OndineBatchJobStuck fires 15 minutes later), time since a process "
        "last looked at the job (submit, status, poll) and the submit's cost estimate. Short "
        "CLI processes keep these on the Pushgateway until the job is collected." + SOURCE,
        "short",
        [g.prom(expr, instant=True, table=True) for _, expr, _ in columns],
        overrides=[g.override("byName", name, **props) for name, _, props in columns],
        sort_by="Age",
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True}, "renameByName": rename, "indexByName": order,
            }},
        ],
    )  # fmt: skip


def panels() -> list[g.Json]:
    """The row header and its panels, in grid order."""
    priced = q.selector(model=q.MODEL)
    failed = q.total_in_window(REQUESTS, q.selector(model=q.MODEL, state="failed"))
    requests = q.total_in_window(REQUESTS, priced)
    return [
        g.row("Batch-API jobs"),
        jobs_in_flight_table(),
        g.stat(
            "Batch jobs and requests submitted in range",
            "Batch-API jobs submitted in the selected range, and the requests they hold "
            "(ondine_batch_jobs_submitted_total, ondine_batch_requests_submitted_total)."
            + SOURCE,
            "short",
            [g.prom(q.total_in_window(JOBS_SUBMITTED, priced), "Jobs", instant=True),
             g.prom(q.total_in_window(REQUESTS_SUBMITTED, priced), "Requests", instant=True)],
            decimals=0,
        ),
        g.bargauge(
            "Batch jobs collected in range by status",
            "Batch-API jobs collected in the selected range, by outcome "
            "(ondine_batch_jobs_finished_total): succeeded, partial (some requests failed), "
            "failed, expired (OndineBatchJobExpired fires), cancelled." + SOURCE,
            "short",
            [g.prom(q.total_in_window(JOBS_FINISHED, priced, semconv.LABEL_STATUS),
                    "{{status}}", instant=True)],
            width=10, decimals=0,
        ),
        g.stat(
            "Batch request failure ratio in range",
            "Share of the collected Batch-API requests that failed at the provider in the "
            "selected range (ondine_batch_requests_total by state). OndineBatchRequestsMostly"
            f"Failed fires above {MOSTLY_FAILED:.0%} over an hour." + SOURCE,
            "percentunit", [g.prom(f"{failed} / ({requests} > 0)", "Failed", instant=True)],
            width=8, thresholds=g.steps(("green", None), ("red", MOSTLY_FAILED)),
        ),
    ]
