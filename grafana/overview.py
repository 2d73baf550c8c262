"""The overview dashboard: spend, progress and failures of ondine pipelines (Prometheus).

Every query reads one source, the `job` variable: a scrape job, `ondine` (what the Pushgateway
holds, kept by `honor_labels`) or the service of OTLP metrics. A job that is both scraped and
pushed reports the same counters twice, so sums across sources would double them.
"""

from __future__ import annotations

from typing import Any

from ondine_otel.telemetry import semconv

from . import batch
from . import layout as g
from . import promql as q
from .thresholds import Thresholds

UID = "ondine-overview"
TRACES_UID = "ondine-traces"

SOURCE = (
    " Source: the series of the selected job only (scrape or Pushgateway, never both added up)."
)
EXEMPLARS = (
    " Exemplars are requested but not relied on: the Prometheus text format the job's endpoint"
    " serves carries none; only metrics that arrive over OTLP may bring trace ids."
)

ALL = q.selector()
WITH_MODEL = q.selector(model=q.MODEL)
GENAI = q.selector(model=q.GENAI_MODEL)


def run_span_query(session_id: str) -> str:
    """TraceQL for the run span of one ondine session (run_id label = ondine.session_id)."""
    return (
        f'{{ name = "{semconv.SPAN_RUN}" && '
        f'span."{semconv.ATTR_SESSION_ID}" = "{session_id}" }}'
    )


def run_links() -> list[g.Json]:
    """From a run_id cell to its trace: the traces dashboard, and Tempo's Explore."""
    dash = (
        f"/d/{TRACES_UID}/ondine-traces?var-run_id=${{__value.raw}}&${{__url_time_range}}"
        "&${datasource:queryparam}&${tempo:queryparam}&${job:queryparam}"
    )
    tempo = g.explore_url(
        g.TEMPO, {"queryType": "traceql", "query": run_span_query("${__value.raw}")}
    )
    return [
        g.link("Trace of run ${__value.raw} (traces dashboard)", dash),
        g.link("Find run ${__value.raw} in Tempo (Explore)", tempo),
    ]


def variables(*, tempo: bool = True) -> list[g.Json]:
    found = [
        g.datasource_variable("datasource", "prometheus", "Prometheus"),
        g.query_variable(
            "job", "Source", f"label_values({q.RUNS}, {q.JOB})", multi=False,
            description="Scrape job, `ondine` (Pushgateway) or OTLP service. One at a time: "
            "a job that is scraped and also pushes would otherwise be counted twice.",
        ),
        g.query_variable(
            "pipeline", "Pipeline", f'label_values({q.RUNS}{{{q.JOB}="$job"}}, {q.PIPELINE})',
            multi=True, description="ondine pipeline names (the pipeline label).",
        ),
        g.query_variable(
            "model", "Model",
            f'label_values({q.TOKENS}{{{q.JOB}="$job",{q.PIPELINE}=~"$pipeline"}}, {q.MODEL})',
            multi=True, description="Models of the selected pipelines (model label; "
            "gen_ai_request_model on the LLM call histograms).",
        ),
    ]
    if tempo:
        found.insert(1, g.datasource_variable("tempo", "tempo", "Tempo"))
    return found


def active_runs_table(width: int = 24) -> g.Json:
    """Every active run: progress bar, rows, ETA, cost, projection and budget; run_id links."""
    eta = (
        f"({q.per_run(q.RUN_ROWS_EXPECTED)} - {q.per_run(q.RUN_ROWS_DONE)})"
        f" * (time() - {q.per_run(q.RUN_START)}) / ({q.per_run(q.RUN_ROWS_DONE)} > 0)"
    )
    columns: list[tuple[str, str, dict[str, Any]]] = [
        ("Progress", q.per_run(q.RUN_PROGRESS), {"unit": "percentunit", "min": 0, "max": 1,
         "custom__cellOptions": {"type": "gauge", "mode": "basic"}}),
        ("Rows done", q.per_run(q.RUN_ROWS_DONE), {"unit": "short", "decimals": 0}),
        ("Rows expected", q.per_run(q.RUN_ROWS_EXPECTED), {"unit": "short", "decimals": 0}),
        ("ETA", eta, {"unit": "s"}),
        ("Running for", f"time() - {q.per_run(q.RUN_START)}", {"unit": "s"}),
        ("Cost so far", q.per_run(q.RUN_COST), {"unit": "currencyUSD"}),
        ("Projected cost", q.projected_cost(), {"unit": "currencyUSD"}),
        ("Budget", q.per_run(q.RUN_BUDGET), {"unit": "currencyUSD"}),
    ]
    refs = "ABCDEFGH"
    rename = {f"Value #{refs[i]}": name for i, (name, _, _) in enumerate(columns)}
    order = {q.PIPELINE: 0, q.RUN_ID: 1} | {name: i + 2 for i, (name, _, _) in enumerate(columns)}
    overrides = [g.override("byName", name, **props) for name, _, props in columns]
    overrides.append(g.override("byName", q.RUN_ID, links=run_links()))
    return g.table(
        "Active runs",
        "Runs in progress now, one row each: progress bar, rows done of rows expected, ETA at "
        "the run's average pace so far ((expected - done) x elapsed / done), spend so far, "
        "projected cost (cost / progress, progress clamped at 1 %) and the run's ondine budget "
        "(with_max_budget; empty without one). Click a run_id for its trace (run_id is the "
        "ondine session id, attribute ondine.session_id of the run span, exported when the "
        "run ends)." + SOURCE,
        "short",
        [g.prom(expr, instant=True, table=True) for _, expr, _ in columns],
        width=width,
        overrides=overrides,
        sort_by="Progress",
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True}, "renameByName": rename, "indexByName": order,
            }},
        ],
    )


def build(limits: Thresholds) -> g.Json:
    spend_in_range = q.total_in_window(q.COST, WITH_MODEL)
    grid = g.Grid()
    grid.add(g.row("Spend"))
    grid.add(
        g.stat(
            "Spend in range",
            "USD spent on LLM calls in the selected time range (ondine_cost_usd_total; a "
            "series that appeared inside the range counts from 0, so a job first seen "
            "part-way through is counted in full)." + SOURCE,
            "currencyUSD", [g.prom(spend_in_range, "Spend", instant=True)], decimals=4,
        ),
        g.stat(
            "Projected daily spend",
            "What a day costs at the pace of the selected range: spend in range x 86400 / range"
            f" seconds. With a 24 h range this is the last day's spend; the spend alert pages "
            f"above {limits.spend_usd_per_hour:g} USD in an hour per pipeline, i.e. "
            f"{24 * limits.spend_usd_per_hour:g} USD a day." + SOURCE,
            "currencyUSD",
            [g.prom(f"{spend_in_range} * 86400 / $__range_s", "Projected per day",
                    instant=True)],
            thresholds=g.steps(("green", None), ("red", 24 * limits.spend_usd_per_hour)),
            decimals=2,
        ),
        g.stat(
            "Runs in progress",
            "Runs in progress now (ondine_runs_active), over the selected pipelines." + SOURCE,
            "short", [g.prom(f"sum({q.RUNS_ACTIVE}{ALL})", "Active", instant=True)],
            decimals=0,
        ),
        g.stat(
            "Failed runs in range",
            "Runs that ended with an error in the selected range (ondine_runs_total"
            '{status="error"}). The OndineRunFailed alert pages on any.' + SOURCE,
            "short",
            [g.prom(q.total_in_window(q.RUNS, q.selector(status="error")), "Failed",
                    instant=True)],
            thresholds=g.steps(("green", None), ("red", 1)), decimals=0,
        ),
    )
    grid.add(
        g.timeseries(
            "Spend rate (USD/h) by pipeline and model",
            "USD per hour: rate(ondine_cost_usd_total) x 3600, per pipeline and model. The red "
            f"line is the spend alert's default of {limits.spend_usd_per_hour:g} USD/h, which "
            "OndineSpendRateHigh compares with each pipeline's spend over the last hour."
            + SOURCE,
            "currencyUSD",
            [g.prom(f"{q.rate(q.COST, WITH_MODEL, f'{q.PIPELINE}, {q.MODEL}')} * 3600",
                    "{{pipeline}} {{model}}")],
            threshold_line=limits.spend_usd_per_hour,
        ),
        g.bargauge(
            "Spend in range by pipeline and model",
            "USD per pipeline and model in the selected range, counted as in Spend in range."
            + SOURCE,
            "currencyUSD",
            [g.prom(q.total_in_window(q.COST, WITH_MODEL, f"{q.PIPELINE}, {q.MODEL}"),
                    "{{pipeline}} {{model}}", instant=True)],
            decimals=4,
        ),
    )
    budget_ratio = f"({q.projected_cost()}) / on ({q.RUN_KEY}) {q.per_run(q.RUN_BUDGET)}"
    grid.add(g.row("Progress and budget"))
    grid.add(active_runs_table())
    grid.add(
        g.bargauge(
            "Projected cost / budget of active runs",
            "Projected cost of each active run (cost so far / progress) as a share of its "
            "ondine budget (ondine_run_budget_usd, runs with with_max_budget only). "
            "OndineRunProjectedOverBudget fires above 100 %: ondine stops the run when the "
            "budget is spent." + SOURCE,
            "percentunit", [g.prom(budget_ratio, "{{pipeline}} {{run_id}}", instant=True)],
            thresholds=g.steps(("green", None), ("orange", 0.8), ("red", 1)), min=0, max=1.5,
        ),
        g.timeseries(
            "Projected cost and budget of active runs",
            "Per active run: projected cost (cost so far / progress, progress clamped at 1 % "
            "so a run that just started does not project to infinity) and its budget (dashed)."
            + SOURCE,
            "currencyUSD",
            [g.prom(q.projected_cost(), "{{run_id}} projected"),
             g.prom(q.per_run(q.RUN_BUDGET), "{{run_id}} budget")],
            overrides=[g.override("byRegexp", ".* budget", custom__lineStyle={
                "fill": "dash", "dash": [10, 10]})],
        ),
    )
    grid.add(g.row("Throughput"))
    grid.add(
        g.timeseries(
            "Rows/s by pipeline",
            "Rows processed per second (rate of ondine_rows_processed_total, which grows live "
            "during a run)." + SOURCE,
            "suffix:rows/s", [g.prom(q.rate(q.ROWS_PROCESSED, ALL, q.PIPELINE), "{{pipeline}}")],
            width=8,
        ),
        g.timeseries(
            "Tokens/s by type",
            "Billable tokens per second by type (input, output) and model "
            "(rate of ondine_tokens_total)." + SOURCE,
            "suffix:tokens/s",
            [g.prom(q.rate(q.TOKENS, WITH_MODEL, f"{q.MODEL}, {q.TYPE}"), "{{model}} {{type}}")],
            width=8,
        ),
        g.timeseries(
            "LLM calls/s by model",
            "LLM calls per second, successful and failed (rate of the GenAI duration "
            "histogram's _count). The GenAI metrics have no pipeline label: they follow the "
            "model selection only." + SOURCE,
            "reqps",
            [g.prom(q.rate(f"{q.GENAI_DURATION}_count", GENAI, q.GENAI_MODEL),
                    "{{gen_ai_request_model}}")],
            width=8,
        ),
    )
    failed_rows = q.total_in_window(q.ROWS_FAILED, ALL, q.PIPELINE, "10m")
    skipped_rows = q.total_in_window(q.ROWS_SKIPPED, ALL, q.PIPELINE, "10m")
    processed_rows = q.total_in_window(q.ROWS_PROCESSED, ALL, q.PIPELINE, "10m")
    ratio = (
        f"(({failed_rows} + {skipped_rows}) or {failed_rows} or {skipped_rows})"
        f" / ({processed_rows} > 0)"
    )
    grid.add(g.row("Failures"))
    grid.add(
        g.timeseries(
            "Row failure ratio",
            "(failed + skipped) / processed rows per pipeline over the last 10 minutes at each "
            "point: the quantity of OndineRowFailureRatioHigh, which fires when it stays above "
            f"the red line ({limits.row_failure_ratio:.0%} by default) for 10 minutes."
            + SOURCE,
            "percentunit", [g.prom(ratio, "{{pipeline}}")],
            threshold_line=limits.row_failure_ratio, width=8, min=0,
        ),
        g.timeseries(
            "LLM call errors by error_type",
            "Failed LLM calls per second by error_type (the exception class or the provider's "
            "error code) and model: _count of the GenAI duration histogram with error_type "
            "set." + SOURCE,
            "reqps",
            [g.prom(q.rate(f"{q.GENAI_DURATION}_count",
                           q.selector(f'{q.ERROR_TYPE}!=""', model=q.GENAI_MODEL),
                           f"{q.GENAI_MODEL}, {q.ERROR_TYPE}"),
                    "{{error_type}} {{gen_ai_request_model}}")],
            width=8, bars=True, stacked=True,
        ),
        g.bargauge(
            "Run outcomes in range",
            "Finished runs per pipeline and status (success, error) in the selected range "
            "(ondine_runs_total; a series new in the range counts from 0)." + SOURCE,
            "short",
            [g.prom(q.total_in_window(q.RUNS, ALL, f"{q.PIPELINE}, {q.STATUS}"),
                    "{{pipeline}} {{status}}", instant=True)],
            width=8, decimals=0,
            overrides=[g.override("byRegexp", ".* error", thresholds=g.steps(
                ("green", None), ("red", 1)))],
        ),
    )
    grid.add(
        g.bargauge(
            "Checkpoints saved and failed in range",
            "Checkpoint saves per pipeline and status (saved, failed) in the selected range "
            "(ondine_checkpoints_total). A failed save turns red: OndineCheckpointSaveFailed "
            "warns on any, since a crash would then lose the progress since the last good "
            "checkpoint." + SOURCE,
            "short",
            [g.prom(q.total_in_window(q.CHECKPOINTS, ALL, f"{q.PIPELINE}, {q.STATUS}"),
                    "{{pipeline}} {{status}}", instant=True)],
            decimals=0,
            overrides=[g.override("byRegexp", ".* failed", thresholds=g.steps(
                ("green", None), ("red", 1)))],
        ),
        g.bargauge(
            "Time since the last success",
            "Age of each pipeline's last successful run (time() - "
            "ondine_last_success_timestamp_seconds), the key metric of a batch job. "
            "OndineNoRecentSuccess pages above the red mark (default "
            f"{limits.last_success_max_age_seconds / 3600:g} h)." + SOURCE,
            "s",
            [g.prom(f"time() - max by ({q.PIPELINE}) ({q.LAST_SUCCESS}{ALL} > 0)",
                    "{{pipeline}}", instant=True)],
            thresholds=g.steps(("green", None), ("red", limits.last_success_max_age_seconds)),
            max=limits.last_success_max_age_seconds * 1.5,
        ),
    )
    grid.add(g.row("Latency"))
    grid.add(
        g.timeseries(
            "Stage duration p50/p95 by stage",
            "Wall time of ondine's stages (DataLoader, PromptFormatter, LLMInvocation, "
            "ResponseParser...), median and 95th percentile from ondine_stage_duration_seconds; "
            "recorded when a stage ends." + EXEMPLARS + SOURCE,
            "s",
            [g.prom(q.quantile(0.5, q.STAGE_DURATION, ALL, q.STAGE), "{{stage}} p50",
                    exemplar=True),
             g.prom(q.quantile(0.95, q.STAGE_DURATION, ALL, q.STAGE), "{{stage}} p95",
                    exemplar=True)],
            width=8,
        ),
        g.timeseries(
            "LLM call latency p50/p95 by model",
            "Latency of single LLM calls, median and 95th percentile per model, from "
            "gen_ai_client_operation_duration_seconds (successful and failed calls). The red "
            f"line is OndineLLMLatencyHigh's default p95 threshold of "
            f"{limits.llm_latency_p95_seconds:g} s." + EXEMPLARS + SOURCE,
            "s",
            [g.prom(q.quantile(0.5, q.GENAI_DURATION, GENAI, q.GENAI_MODEL),
                    "{{gen_ai_request_model}} p50", exemplar=True),
             g.prom(q.quantile(0.95, q.GENAI_DURATION, GENAI, q.GENAI_MODEL),
                    "{{gen_ai_request_model}} p95", exemplar=True)],
            threshold_line=limits.llm_latency_p95_seconds, width=8,
        ),
        g.timeseries(
            "Run duration p50/p95 by pipeline",
            "Whole-run wall time per pipeline, median and 95th percentile "
            "(ondine_run_duration_seconds, successful and failed runs)." + SOURCE,
            "s",
            [g.prom(q.quantile(0.5, q.RUN_DURATION, ALL, q.PIPELINE), "{{pipeline}} p50"),
             g.prom(q.quantile(0.95, q.RUN_DURATION, ALL, q.PIPELINE), "{{pipeline}} p95")],
            width=8,
        ),
    )
    grid.add(*batch.panels())
    return g.dashboard(
        UID, "ondine / Overview",
        "Spend, progress and failures of ondine LLM batch pipelines (ondine-otel metrics).",
        variables(), grid,
        plugins=[("datasource", "prometheus", "Prometheus"), ("panel", "timeseries",
                 "Time series"), ("panel", "stat", "Stat"), ("panel", "bargauge", "Bar gauge"),
                 ("panel", "table", "Table")],
    )
