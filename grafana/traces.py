"""The traces dashboard: recent, failed and slow ondine runs from Tempo, one click to a trace.

Runs are `ondine.pipeline` spans (the root span of a run's trace) found with TraceQL; a trace
id opens in this dashboard's trace view, in Tempo or in Jaeger. Active runs come from
Prometheus, whose run_id label is the run span's `ondine.session_id`.
"""

from __future__ import annotations

from ondine_otel.telemetry import semconv

from . import layout as g
from . import overview

UID = overview.TRACES_UID

RUN = f'name = "{semconv.SPAN_RUN}"'
PIPELINE = f'span."{semconv.ATTR_PIPELINE_NAME}" =~ "${{pipeline:regex}}"'
RUN_COLUMNS = (
    semconv.ATTR_SESSION_ID,
    semconv.ATTR_ROWS_PROCESSED,
    semconv.ATTR_ROWS_FAILED,
    semconv.ATTR_ROWS_SKIPPED,
    semconv.ATTR_COST_USD,
    semconv.ATTR_LLM_MODEL,
)


def select(*attributes: str) -> str:
    return "select(" + ", ".join(f'span."{a}"' for a in attributes) + ")"


def runs(*conditions: str, newest: bool = False) -> str:
    """Run spans of the selected pipelines that meet `conditions`, with the run's numbers.

    `newest` asks Tempo (2.7+) for the most recent matches instead of the first found.
    """
    query = "{ " + " && ".join((RUN, PIPELINE, *conditions)) + " } | " + select(*RUN_COLUMNS)
    return query + " with (most_recent=true)" if newest else query


QUERIES: dict[str, str] = {
    "recent": runs(newest=True),
    "failed": runs("status = error", newest=True),
    "slowest": runs("duration > $min_run_duration"),
    "failing_rows": runs(
        f'(span."{semconv.ATTR_ROWS_FAILED}" > 0 || span."{semconv.ATTR_ROWS_SKIPPED}" > 0)'
    ),
    "resumed": runs(f'span."{semconv.ATTR_RESUMED}" = true'),
    "failed_rows": (
        "{ " + RUN + " && " + PIPELINE + f' && event:name = "{semconv.EVENT_ROW_FAILED}" }}'
        " | " + select(*RUN_COLUMNS)
    ),
    "failed_calls": (
        "{ " + RUN + " && " + PIPELINE + " } >> { kind = client && status = error } | "
        + select(semconv.ERROR_TYPE, semconv.GEN_AI_REQUEST_MODEL, semconv.GEN_AI_PROVIDER_NAME)
    ),
    "failed_checkpoints": (
        "{ " + RUN + " && " + PIPELINE + f' && event:name = "{semconv.EVENT_CHECKPOINT}"'
        f' && event."{semconv.ATTR_CHECKPOINT_SAVED}" = false }}'
    ),
    "by_run_id": "{ " + RUN + f' && span."{semconv.ATTR_SESSION_ID}" = "$run_id" }} | '
    + select(*RUN_COLUMNS),
}


def trace_links() -> list[g.Json]:
    """From a trace id to the trace: here, in Tempo, in Jaeger (Explore and its own UI)."""
    here = (
        f"/d/{UID}/ondine-traces?var-trace_id=${{__value.raw}}&${{__url_time_range}}"
        "&${tempo:queryparam}&${jaeger:queryparam}&${datasource:queryparam}"
        "&${pipeline:queryparam}&${jaeger_url:queryparam}"
    )
    return [
        g.link("Show trace ${__value.raw} below", here),
        g.link("Open in Tempo (Explore)", g.explore_url(
            g.TEMPO, {"queryType": "traceql", "query": "${__value.raw}"})),
        g.link("Open in Jaeger (Explore)", g.explore_url(g.JAEGER, {"query": "${__value.raw}"})),
        g.link("Open in the Jaeger UI", "${jaeger_url}/trace/${__value.raw}"),
    ]


def run_table(title: str, description: str, query: str, *, sort_by: str | None = None,
              width: int = 12) -> g.Json:
    return g.table(
        title,
        description + " Click a trace id to open the trace here, in Tempo or in Jaeger.",
        "none",
        [g.traceql(query)],
        width=width,
        height=9,
        datasource=g.TEMPO,
        sort_by=sort_by,
        overrides=[
            g.override("byName", "traceID", links=trace_links()),
            g.override("byName", "traceDuration", unit="ms"),
            g.override("byName", semconv.ATTR_COST_USD, unit="currencyUSD"),
        ],
    )


def variables() -> list[g.Json]:
    found = overview.variables()
    found.insert(2, g.datasource_variable("jaeger", "jaeger", "Jaeger"))
    found.remove(next(v for v in found if v["name"] == "model"))
    found += [
        g.textbox_variable("min_run_duration", "Slow run: longer than", "1m",
                           "TraceQL duration (30s, 10m, 2h) a run must exceed to be listed "
                           "under Slowest runs."),
        g.textbox_variable("run_id", "Run id", "", "An ondine session id (the run_id label "
                           "of the active-run metrics) to look up under Selected run."),
        g.textbox_variable("trace_id", "Trace id", "", "Trace shown in the trace view."),
        g.textbox_variable("jaeger_url", "Jaeger UI", "http://localhost:16686",
                           "Base URL of the Jaeger UI, for the direct links."),
    ]
    return found


def build() -> g.Json:
    grid = g.Grid()
    grid.add(g.row("Runs (Tempo)"))
    grid.add(
        run_table("Recent runs", "Latest ondine runs of the selected pipelines: run spans "
                  "(ondine.pipeline) with session id, rows processed/failed/skipped, cost "
                  "and model.", QUERIES["recent"]),
        run_table("Failed runs", "Runs whose run span ended with status ERROR (an exception, "
                  "a crash or an interrupt); the span's exception event says why.",
                  QUERIES["failed"]),
        run_table("Slowest runs", "Runs longer than $min_run_duration, longest first.",
                  QUERIES["slowest"], sort_by="Duration"),
        run_table("Runs with failed or skipped rows", "Runs that finished but lost rows: "
                  "ondine.rows.failed or ondine.rows.skipped above 0 on the run span.",
                  QUERIES["failing_rows"]),
        run_table("Which rows failed", "Runs with ondine.row.failed events: open a run's trace "
                  "to read, per failed row, its index in the input (ondine.row.index), "
                  "ondine's reason (skipped or parse_failure), the stage and a redacted "
                  "message (at most 100 rows per run).", QUERIES["failed_rows"]),
        run_table("Failed LLM calls", "ERROR chat spans (CLIENT) under runs of the selected "
                  "pipelines, with error.type, model and provider.", QUERIES["failed_calls"]),
        run_table("Failed checkpoint saves", "Runs with an ondine.checkpoint event whose "
                  "ondine.checkpoint.saved is false (event attributes need Tempo's vParquet4 "
                  "blocks, Tempo 2.6 or later).", QUERIES["failed_checkpoints"]),
        run_table("Resumed runs", "Runs restored from a checkpoint (ondine.resumed); their "
                  "span links lead to the interrupted run.", QUERIES["resumed"], width=24),
    )
    grid.add(g.row("Active runs (Prometheus)"))
    grid.add(overview.active_runs_table())
    grid.add(g.row("Selected run"))
    grid.add(
        run_table("Run by id", "The run span of the ondine session in $run_id (set it from "
                  "a run_id link in Active runs).", QUERIES["by_run_id"], width=24),
        g.traces_view("Trace", "The trace in $trace_id: run span, one span per stage, chat "
                      "spans per LLM call, checkpoints as span events.", "$trace_id"),
    )
    return g.dashboard(
        UID, "ondine / Traces",
        "ondine runs as traces (Tempo, Jaeger): recent, failed, slow; from a run to its trace.",
        variables(), grid,
        plugins=[("datasource", "tempo", "Tempo"), ("datasource", "jaeger", "Jaeger"),
                 ("datasource", "prometheus", "Prometheus"), ("panel", "table", "Table"),
                 ("panel", "traces", "Traces")],
    )
