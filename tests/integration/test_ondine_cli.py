"""ondine's own CLI under zero-code, and an orchestrator's trace context, in real processes.

`opentelemetry-instrument ondine process -c job.yaml` must give the trace and the metrics the
Python entry gives for the same job. The Python job here is what ondine's Airflow operator and
Prefect task do in the worker (`ConfigLoader.from_yaml`, `Pipeline(specs)`, `execute()`; both
refuse to run without their framework installed), with `instrument()` at the top as a DAG file
would have it. Both run with `TRACEPARENT` set, as an orchestrator's task exports it, and must
join that trace as children of the task's span (contract section 1).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ondine_otel.demo.data import load_reviews
from ondine_otel.telemetry import semconv
from tests.support.otlp_receiver import HistogramValue, OtlpHttpReceiver, SpanView

pytestmark = pytest.mark.integration

ROWS = 6
TASK_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TASK_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TASK_TRACE_ID}-{TASK_SPAN_ID}-01"

CONFIG = """\
data:
  source:
    type: csv
    path: reviews.csv
  input_columns: [review]
  output_columns: [sentiment]
prompt:
  template: "Sentiment of: {review}"
llm:
  provider: openai
  model: gpt-4o-mini
  api_key: sk-test
  extra_params:
    mock_response: positive
processing:
  checkpoint_dir: checkpoints
"""

# The Airflow operator's / Prefect task's path through ondine, in the worker process.
OPERATOR_JOB = """\
import ondine_otel
from ondine import Pipeline
from ondine.config import ConfigLoader

with ondine_otel.instrument():
    specs = ConfigLoader.from_yaml("job.yaml")
    specs.dataset.source_path = "reviews.csv"
    result = Pipeline(specs).execute()
    assert result.metrics.processed_rows == {rows}, result.metrics
"""

COUNTERS = (
    semconv.METRIC_ROWS_PROCESSED,
    semconv.METRIC_ROWS_FAILED,
    semconv.METRIC_TOKENS,
    semconv.METRIC_COST,
    semconv.METRIC_RUNS,
)
HISTOGRAMS = (
    semconv.METRIC_GENAI_DURATION,
    semconv.METRIC_GENAI_TOKENS,
    semconv.METRIC_RUN_DURATION,
)


def run_job(command: list[str], workdir: Path) -> tuple[list[SpanView], dict[str, Any]]:
    """Run `command` in `workdir` exporting OTLP to a fresh receiver; ondine-otel's spans and
    a summary of its metrics (totals by label set; histograms' counts and token sums). Only
    ondine-otel's scope: zero-code also runs any other instrumentor installed (litellm's)."""
    with OtlpHttpReceiver() as receiver:
        done = subprocess.run(
            command,
            env=receiver.job_env(
                OTEL_METRICS_EXPORTER="otlp",
                OTEL_SERVICE_NAME="enrichment",
                TRACEPARENT=TRACEPARENT,
            ),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
        # Both flush at exit; nothing is left to wait for once the process is gone.
        receiver.wait_for_spans(
            lambda found: any(s.name == semconv.SPAN_RUN for s in found), timeout=10
        )
        receiver.wait_for_metric(semconv.METRIC_RUNS, timeout=10)
        spans = [s for s in receiver.spans() if s.scope == semconv.INSTRUMENTATION_NAME]
        metrics: dict[str, Any] = {}
        for name in (*COUNTERS, *HISTOGRAMS):
            points = receiver.metric_points(name, scope=semconv.INSTRUMENTATION_NAME)
            metrics[name] = sorted(
                (sorted(attrs.items()), _comparable(name, value)) for attrs, value in points
            )
    return spans, metrics


def _comparable(name: str, value: Any) -> Any:
    if isinstance(value, HistogramValue):  # durations differ between runs; counts do not
        return (value.count, value.sum if name == semconv.METRIC_GENAI_TOKENS else None)
    return round(float(value), 12)


def shape(spans: list[SpanView]) -> Counter[tuple[str, str]]:
    """(span, parent span) names: the trace's structure, whatever the ids."""
    names = {s.span_id: s.name for s in spans}
    return Counter((s.name, names.get(s.parent_span_id, "<outside>")) for s in spans)


def run_span(spans: list[SpanView]) -> SpanView:
    (run,) = [s for s in spans if s.name == semconv.SPAN_RUN]
    return run


TOTALS = (
    semconv.ATTR_ROWS_TOTAL,
    semconv.ATTR_ROWS_PROCESSED,
    semconv.ATTR_ROWS_FAILED,
    semconv.ATTR_COST_USD,
    semconv.ATTR_TOKENS_INPUT,
    semconv.ATTR_TOKENS_OUTPUT,
    semconv.ATTR_LLM_MODEL,
    semconv.ATTR_LLM_PROVIDER,
)


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    load_reviews(ROWS).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "job.yaml").write_text(CONFIG)
    (tmp_path / "operator_job.py").write_text(textwrap.dedent(OPERATOR_JOB.format(rows=ROWS)))
    return tmp_path


def test_ondine_process_under_zero_code_equals_the_python_entry_and_joins_traceparent(
    job_dir: Path,
) -> None:
    bin_dir = Path(sys.executable).parent
    launcher, ondine_cli = bin_dir / "opentelemetry-instrument", bin_dir / "ondine"
    cli_spans, cli_metrics = run_job(
        [str(launcher), str(ondine_cli), "process", "-c", "job.yaml"], job_dir
    )
    py_spans, py_metrics = run_job([sys.executable, "operator_job.py"], job_dir)

    for spans in (cli_spans, py_spans):
        run = run_span(spans)
        # The orchestrator's task span is the run's parent: one trace from DAG to LLM call.
        assert run.trace_id == TASK_TRACE_ID and run.parent_span_id == TASK_SPAN_ID
        assert {s.trace_id for s in spans} == {TASK_TRACE_ID}
        assert run.attributes[semconv.ATTR_ROWS_PROCESSED] == ROWS
        assert run.attributes[semconv.ATTR_COST_USD] > 0

    expected = Counter(
        {
            (semconv.SPAN_RUN, "<outside>"): 1,
            (f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation", semconv.SPAN_RUN): 1,
            ("chat gpt-4o-mini", f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation"): ROWS,
        }
    )
    assert shape(cli_spans) >= expected
    assert shape(cli_spans) == shape(py_spans)
    cli_run, py_run = run_span(cli_spans), run_span(py_spans)
    assert {k: cli_run.attributes.get(k) for k in TOTALS} == {
        k: py_run.attributes.get(k) for k in TOTALS
    }

    runs = dict((tuple(labels), value) for labels, value in cli_metrics[semconv.METRIC_RUNS])
    assert [value for labels, value in runs.items() if ("status", "success") in labels] == [1.0]
    assert cli_metrics[semconv.METRIC_ROWS_PROCESSED][0][1] == ROWS
    assert cli_metrics == py_metrics
