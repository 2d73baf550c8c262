"""Many runs at once into one OTLP receiver: 16 pipelines in threads, 4 worker processes.

Every trace must be complete (run span, its stages, a chat span per call under the LLM stage)
and separate (no span in another run's trace), and the metric totals exact across all runs and
processes. Worker processes come from `multiprocessing` pools with `fork` (the children inherit
the parent's instrumented set-up and must export on their own) and `spawn` (fresh interpreters
that call `instrument()` in the pool initializer, as the README tells users to).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from ondine_otel.telemetry import semconv
from tests.reliability import jobs
from tests.reliability.conftest import Figures
from tests.support.otlp_receiver import OtlpHttpReceiver, SpanView

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

THREADS = 16
PROCESSES = 4

_THREADS_CHILD = f"""
import ondine_otel
from tests.reliability import workers
handle = ondine_otel.instrument(otlp_endpoint=sys.argv[1], traces_exporter="otlp",
                                metrics_exporter="otlp")
results, errors = [None] * {THREADS}, []
def work(index):
    try:
        results[index] = workers.run_job(index)
    except BaseException as error:
        errors.append(repr(error))
threads = [threading.Thread(target=work, args=(i,)) for i in range({THREADS})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
handle.shutdown(timeout=10)
report(jobs=results, errors=errors)
"""

_POOL_CHILD = f"""
import multiprocessing
import ondine_otel
from tests.reliability import workers
endpoint, method = sys.argv[1], sys.argv[2]
handle = ondine_otel.instrument(otlp_endpoint=endpoint, traces_exporter="otlp",
                                metrics_exporter="otlp")
results = [workers.run_job(0)]  # the parent runs first: its exporter threads exist at fork
context = multiprocessing.get_context(method)
spawned = dict(initializer=workers.instrument_worker, initargs=(endpoint,))
extra = spawned if method == "spawn" else {{}}
pool = context.Pool({PROCESSES}, **extra)
results += pool.map(workers.run_job, range(1, {PROCESSES} + 1), chunksize=1)
pool.close()  # workers finish and exit the way Pool workers do
pool.join()
handle.shutdown(timeout=10)
report(jobs=results, errors=[])
"""


def _complete_traces(spans: list[SpanView]) -> tuple[int, list[str]]:
    """(run spans, problems): every span sits in exactly one complete run trace."""
    problems: list[str] = []
    by_trace: dict[str, list[SpanView]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    run_count = 0
    for trace_id, members in by_trace.items():
        run_spans = [s for s in members if s.name == semconv.SPAN_RUN]
        if len(run_spans) != 1:
            problems.append(f"trace {trace_id}: {len(run_spans)} run spans")
            continue
        run_count += 1
        run = run_spans[0]
        ids = {s.span_id for s in members}
        orphans = [s.name for s in members if s is not run and s.parent_span_id not in ids]
        if orphans:
            problems.append(f"trace {trace_id}: spans without a parent in it: {orphans[:5]}")
        llm = [s for s in members if s.name == f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation"]
        chats = [s for s in members if s.name.startswith(semconv.SPAN_LLM_OPERATION + " ")]
        rows = run.attributes.get(semconv.ATTR_ROWS_TOTAL)
        if len(llm) != 1 or any(c.parent_span_id != llm[0].span_id for c in chats):
            problems.append(f"trace {trace_id}: chat spans not under its one LLM stage")
        if len(chats) != rows:
            problems.append(f"trace {trace_id}: {len(chats)} chat spans for {rows} rows")
    return run_count, problems


def _total(receiver: OtlpHttpReceiver, name: str, **labels: str) -> float:
    total = 0.0
    for attrs, value in receiver.metric_points(name):
        if all(attrs.get(k) == v for k, v in labels.items()):
            total += float(value)  # type: ignore[arg-type]
    return total


def _check(
    receiver: OtlpHttpReceiver, result: dict[str, Any], expected_runs: int
) -> tuple[dict[str, Any], list[str]]:
    """Measured totals and the list of everything that is wrong."""
    assert result["errors"] == [], result["errors"]
    done = result["jobs"]
    spans = receiver.spans()
    runs, problems = _complete_traces(spans)
    measured = {
        "runs": runs,
        "rows": _total(receiver, semconv.METRIC_ROWS_PROCESSED),
        "cost": _total(receiver, semconv.METRIC_COST),
        "tokens": _total(receiver, semconv.METRIC_TOKENS),
        "success": _total(receiver, semconv.METRIC_RUNS, status="success"),
        "pids": len({j["pid"] for j in done}),
    }
    expected = {
        "runs": expected_runs,
        "rows": float(sum(j["rows"] for j in done)),
        "cost": sum(j["cost"] for j in done),
        "tokens": float(sum(j["tokens"] for j in done)),
        "success": float(expected_runs),
    }
    for key, want in expected.items():
        got = measured[key]
        if abs(got - want) > 1e-9 * max(1.0, abs(want)):
            problems.append(f"{key}: telemetry {got} != work done {want}")
    return measured, problems


def test_sixteen_threads_give_sixteen_complete_traces_and_exact_totals(
    otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    body = _THREADS_CHILD.replace("sys.argv[1]", repr(otlp_http_receiver.endpoint))
    result = jobs.run(body, timeout=240)
    measured, problems = _check(otlp_http_receiver, result, THREADS)
    figures.record(
        f"{THREADS} pipelines in threads, one OTLP receiver",
        "one separate trace per run",
        "every trace complete and separate; counter totals exact",
        f"{measured['runs']}/{THREADS} complete traces, rows {measured['rows']:g}, "
        f"{len(problems)} problems",
    )
    assert problems == []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_export_complete_traces_and_exact_totals(
    method: str, otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    body = _POOL_CHILD.replace(
        "sys.argv[1], sys.argv[2]", f"{otlp_http_receiver.endpoint!r}, {method!r}"
    )
    result = jobs.run(body, timeout=240)
    measured, problems = _check(otlp_http_receiver, result, PROCESSES + 1)
    figures.record(
        f"{PROCESSES} worker processes ({method}) after a run in the parent",
        "one trace per run from every process" if method == "fork" else
        "one trace per run; each spawned worker calls instrument() in its initializer",
        "every trace complete and separate; counter totals exact across processes",
        f"{measured['runs']}/{PROCESSES + 1} complete traces from {measured['pids']} processes; "
        + ("; ".join(problems) if problems else "totals exact"),
    )
    assert problems == []
