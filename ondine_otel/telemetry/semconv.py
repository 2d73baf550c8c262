"""Every span, attribute, event and metric name of the telemetry contract, in one place.

Dashboards, alert rules and users' PromQL depend on these strings: change one only together
with everything that uses it. The README's telemetry reference is tested against this module.
"""

from __future__ import annotations

# --- spans -------------------------------------------------------------------------------
SPAN_RUN = "ondine.pipeline"
SPAN_STAGE_PREFIX = "ondine.stage"  # full name: f"{SPAN_STAGE_PREFIX} {stage}"
SPAN_LLM_OPERATION = "chat"  # full name: f"{operation} {model}"

# --- run span attributes ---------------------------------------------------------------
ATTR_SESSION_ID = "ondine.session_id"
ATTR_PIPELINE_ID = "ondine.pipeline_id"
ATTR_PIPELINE_NAME = "ondine.pipeline.name"
ATTR_TRACE_ID = "ondine.trace_id"
ATTR_ROWS_TOTAL = "ondine.rows.total"
ATTR_ROWS_PROCESSED = "ondine.rows.processed"
ATTR_ROWS_FAILED = "ondine.rows.failed"
ATTR_ROWS_SKIPPED = "ondine.rows.skipped"
ATTR_COST_USD = "ondine.cost.usd"
ATTR_TOKENS_INPUT = "ondine.tokens.input"
ATTR_TOKENS_OUTPUT = "ondine.tokens.output"
ATTR_TOKENS_TOTAL = "ondine.tokens.total"
ATTR_ROWS_PER_SECOND = "ondine.rows_per_second"
ATTR_RESUMED = "ondine.resumed"
ATTR_LLM_SPANS_DROPPED = "ondine.llm_spans.dropped"
#: The pipeline's model and provider on the run span: not `gen_ai.*`, which would make trace
#: stores that classify by GenAI attributes (Arize Phoenix) show the run as an LLM call.
ATTR_LLM_MODEL = "ondine.llm.model"
ATTR_LLM_PROVIDER = "ondine.llm.provider"
#: The deployment that served (or failed) a call: a router's model id or the API host, never a key.
ATTR_DEPLOYMENT = "ondine.llm.deployment"

# --- Batch-API jobs (`with_execution_mode("provider_batch")`): spans and attributes --------
# submit is a traced run in one process; status, poll and collect, in any later process, are
# roots of their own traces with a Link to the submit root (read from a sidecar file beside
# ondine's run registry).
SPAN_BATCH_SUBMIT = "ondine.batch.submit"
SPAN_BATCH_UPLOAD = "ondine.batch.upload"  # CLIENT: the JSONL upload and the job's creation
SPAN_BATCH_STATUS = "ondine.batch.status"  # `ondine status RUN_ID`
SPAN_BATCH_POLL = "ondine.batch.poll"  # CLIENT: ProviderBatchBackend.poll outside a command
SPAN_BATCH_COLLECT = "ondine.batch.collect"  # `ondine collect RUN_ID`, or a collect by hand
SPAN_BATCH_DOWNLOAD = "ondine.batch.download"  # CLIENT: the results' download and decoding
ATTR_BATCH_RUN_ID = "ondine.batch.run_id"  # ondine's RunRegistry run id
ATTR_BATCH_PROVIDER_JOB_ID = "ondine.batch.provider_job_id"
ATTR_BATCH_STATUS = "ondine.batch.status"  # registry status, or the provider's when polled
ATTR_BATCH_REQUESTS = "ondine.batch.requests"  # requests submitted
ATTR_BATCH_REQUESTS_COMPLETED = "ondine.batch.requests.completed"
ATTR_BATCH_REQUESTS_FAILED = "ondine.batch.requests.failed"
ATTR_BATCH_ESTIMATED_COST_USD = "ondine.batch.estimated_cost.usd"

# --- stage span attributes -------------------------------------------------------------
ATTR_STAGE_NAME = "ondine.stage.name"
ATTR_STAGE_INDEX = "ondine.stage.index"
ATTR_STAGE_COST_USD = "ondine.stage.cost.usd"
ATTR_STAGE_TOKENS = "ondine.stage.tokens"

# --- groups of runs: streams, composed calls ----------------------------------------------
ATTR_CHUNK_INDEX = "ondine.chunk.index"  # a stream chunk's stage spans and row events
ATTR_STREAM_METHOD = "ondine.stream.method"  # the run span of a stream
ATTR_STREAM_CHUNKS = "ondine.stream.chunks"
SPAN_COMPOSITION = "ondine.composition"  # root of a PipelineComposer.execute() call
ATTR_COMPOSITION_COLUMNS = "ondine.composition.columns"
ATTR_COLUMN = "ondine.column"  # a composed call's column run

# --- GenAI semantic conventions (LLM call spans) -----------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"

# --- OpenInference (what Arize Phoenix and other OpenInference stores read) -------------------
#: Span kind: `CHAIN` on run and stage spans, `LLM` on LLM call spans. Stores that classify by
#: it (Phoenix) then never count a run as an LLM call, and cost only the calls.
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
KIND_CHAIN = "CHAIN"
KIND_LLM = "LLM"
#: Model and token counts of an LLM call span, from which such stores price the call (they read
#: no reported cost); the same values as the `gen_ai.*` attributes beside them.
OPENINFERENCE_LLM_MODEL_NAME = "llm.model_name"
OPENINFERENCE_LLM_TOKENS_PROMPT = "llm.token_count.prompt"
OPENINFERENCE_LLM_TOKENS_COMPLETION = "llm.token_count.completion"
OPENINFERENCE_LLM_TOKENS_TOTAL = "llm.token_count.total"

# --- events ------------------------------------------------------------------------------
EVENT_CHECKPOINT = "ondine.checkpoint"
EVENT_CHECKPOINT_RESTORED = "ondine.checkpoint.restored"
EVENT_PROGRESS = "ondine.progress"
EVENT_ROW_FAILED = "ondine.row.failed"
ATTR_ROW_INDEX = "ondine.row.index"  # the row's position in the user's input
ATTR_ROW_REASON = "ondine.row.reason"  # ondine's reason: skipped | parse_failure
ATTR_ROW_ERROR_MESSAGE = "ondine.row.error.message"  # redacted, at most 200 characters
ATTR_ROW_EVENTS_DROPPED = "ondine.row_events.dropped"  # failed rows past the event limit

ATTR_CHECKPOINT_ROW = "ondine.checkpoint.row"
ATTR_CHECKPOINT_STAGE_INDEX = "ondine.checkpoint.stage_index"
ATTR_CHECKPOINT_COST_USD = "ondine.checkpoint.cost.usd"
ATTR_CHECKPOINT_TOKENS = "ondine.checkpoint.tokens"
ATTR_CHECKPOINT_ROWS_FAILED = "ondine.checkpoint.rows.failed"
ATTR_CHECKPOINT_ROWS_SKIPPED = "ondine.checkpoint.rows.skipped"
ATTR_CHECKPOINT_BYTES = "ondine.checkpoint.bytes"
ATTR_CHECKPOINT_SAVED = "ondine.checkpoint.saved"
ATTR_RESUMED_FROM_TRACE_ID = "ondine.resumed_from.trace_id"
ATTR_PROGRESS_PERCENT = "ondine.progress.percent"

# Where the run's W3C traceparent is stored inside a checkpoint (intermediate_data key).
CHECKPOINT_TRACEPARENT_KEY = "otel.traceparent"

# --- metrics: OTel instrument names (the Prometheus exporter appends the suffixes) --------
# Prometheus names in the contract are given next to each instrument.
METRIC_ROWS_PROCESSED = "ondine.rows.processed"  # ondine_rows_processed_total
METRIC_ROWS_FAILED = "ondine.rows.failed"  # ondine_rows_failed_total
METRIC_ROWS_SKIPPED = "ondine.rows.skipped"  # ondine_rows_skipped_total
METRIC_TOKENS = "ondine.tokens"  # ondine_tokens_total
METRIC_COST = "ondine.cost.usd"  # ondine_cost_usd_total
METRIC_RUNS = "ondine.runs"  # ondine_runs_total
METRIC_CHECKPOINTS = "ondine.checkpoints"  # ondine_checkpoints_total
METRIC_RUN_DURATION = "ondine.run.duration"  # ondine_run_duration_seconds (unit s)
METRIC_STAGE_DURATION = "ondine.stage.duration"  # ondine_stage_duration_seconds (unit s)
METRIC_RUNS_ACTIVE = "ondine.runs.active"  # ondine_runs_active
METRIC_RUN_PROGRESS_RATIO = "ondine.run.progress.ratio"  # ondine_run_progress_ratio
METRIC_RUN_ROWS_DONE = "ondine.run.rows.done"  # ondine_run_rows_done
METRIC_RUN_ROWS_EXPECTED = "ondine.run.rows.expected"  # ondine_run_rows_expected
METRIC_RUN_COST = "ondine.run.cost.usd"  # ondine_run_cost_usd
METRIC_RUN_START = "ondine.run.start.timestamp"  # ondine_run_start_timestamp_seconds (unit s)
METRIC_LAST_SUCCESS = "ondine.last_success.timestamp"  # ondine_last_success_timestamp_seconds
METRIC_RUN_BUDGET = "ondine.run.budget.usd"  # ondine_run_budget_usd
# Batch-API jobs: counters (labels pipeline, provider, model; + status / state).
METRIC_BATCH_JOBS_SUBMITTED = "ondine.batch.jobs.submitted"  # ondine_batch_jobs_submitted_total
METRIC_BATCH_JOBS_FINISHED = "ondine.batch.jobs.finished"  # ondine_batch_jobs_finished_total
METRIC_BATCH_REQUESTS_SUBMITTED = (
    "ondine.batch.requests.submitted"  # ondine_batch_requests_submitted_total
)
METRIC_BATCH_REQUESTS = "ondine.batch.requests"  # ondine_batch_requests_total{state}
# Batch-API jobs in flight: gauges with a run_id label, reported while the job is not collected.
METRIC_BATCH_JOB_REQUESTS = "ondine.batch.job.requests"  # ondine_batch_job_requests{state}
METRIC_BATCH_JOB_SUBMITTED = (
    "ondine.batch.job.submitted.timestamp"  # ondine_batch_job_submitted_timestamp_seconds
)
METRIC_BATCH_JOB_DEADLINE = (
    "ondine.batch.job.deadline.timestamp"  # ondine_batch_job_deadline_timestamp_seconds
)
METRIC_BATCH_JOB_CHECKED = (
    "ondine.batch.job.checked.timestamp"  # ondine_batch_job_checked_timestamp_seconds
)
METRIC_BATCH_JOB_ESTIMATED_COST = (
    "ondine.batch.job.estimated_cost.usd"  # ondine_batch_job_estimated_cost_usd
)
METRIC_GENAI_DURATION = (
    "gen_ai.client.operation.duration"  # gen_ai_client_operation_duration_seconds
)
METRIC_GENAI_TOKENS = "gen_ai.client.token.usage"  # gen_ai_client_token_usage

# Prometheus series names of the contract (section 3), as users type them in PromQL.
PROMETHEUS_NAMES: tuple[str, ...] = (
    "ondine_rows_processed_total",
    "ondine_rows_failed_total",
    "ondine_rows_skipped_total",
    "ondine_tokens_total",
    "ondine_cost_usd_total",
    "ondine_runs_total",
    "ondine_checkpoints_total",
    "ondine_run_duration_seconds",
    "ondine_stage_duration_seconds",
    "ondine_runs_active",
    "ondine_run_progress_ratio",
    "ondine_run_rows_done",
    "ondine_run_rows_expected",
    "ondine_run_cost_usd",
    "ondine_run_start_timestamp_seconds",
    "ondine_last_success_timestamp_seconds",
    "ondine_run_budget_usd",
    "ondine_batch_jobs_submitted_total",
    "ondine_batch_jobs_finished_total",
    "ondine_batch_requests_submitted_total",
    "ondine_batch_requests_total",
    "ondine_batch_job_requests",
    "ondine_batch_job_submitted_timestamp_seconds",
    "ondine_batch_job_deadline_timestamp_seconds",
    "ondine_batch_job_checked_timestamp_seconds",
    "ondine_batch_job_estimated_cost_usd",
    "gen_ai_client_operation_duration_seconds",
    "gen_ai_client_token_usage",
)

# --- metric labels -----------------------------------------------------------------------
LABEL_PIPELINE = "pipeline"
LABEL_MODEL = "model"
LABEL_PROVIDER = "provider"
LABEL_TYPE = "type"
LABEL_STATUS = "status"
LABEL_STAGE = "stage"
LABEL_RUN_ID = "run_id"
LABEL_STATE = "state"  # a batch job's requests: total | completed | failed
OVERFLOW_LABEL_VALUE = "other"

# --- names of this package inside ondine and OpenTelemetry -------------------------------
INSTRUMENTATION_NAME = "ondine_otel"
OBSERVER_NAME = "otel"  # ondine's PipelineObserver registry name (with_observer("otel", ...))
