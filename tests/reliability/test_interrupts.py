"""A run that dies: KeyboardInterrupt, an exception ondine does not report, SIGTERM.

Each job runs in its own interpreter with `instrument()` exporting traces and metrics over OTLP
to a receiver in this process. Whatever kills the run, the receiver must hold its run span
(ended, status ERROR), its `ondine.checkpoint` event, and `ondine.runs{status="error"}` = 1.
"""

from __future__ import annotations

import signal
import time

import pytest

from ondine_otel.telemetry import semconv
from tests.reliability import jobs
from tests.reliability.conftest import Figures
from tests.support.otlp_receiver import OtlpHttpReceiver, SpanView

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

_CHILD = """
import ondine_otel
from ondine.orchestration.observers import ExecutionObserver

class Hook(ExecutionObserver):
    # Prints when a stage starts; `exit_at` makes that stage call sys.exit (SystemExit is
    # a BaseException: ondine neither reports it to observers nor saves a checkpoint for it).
    def __init__(self, exit_at=None):
        self.exit_at = exit_at
    def on_pipeline_start(self, pipeline, context): pass
    def on_stage_start(self, stage, context):
        print("STAGE " + stage.name, flush=True)
        if stage.name == self.exit_at:
            sys.exit(3)
    def on_stage_complete(self, stage, context, result): pass
    def on_stage_error(self, stage, context, error): pass
    def on_pipeline_complete(self, context, result): pass
    def on_pipeline_error(self, context, error): pass

KIND = {kind!r}
handle = ondine_otel.instrument(otlp_endpoint={endpoint!r}, traces_exporter="otlp",
                                metrics_exporter="otlp", otlp_timeout=2000)
client = OfflineLLMClient(
    interrupt_after=25 if KIND == "keyboard_interrupt" else None,
    latency_s=0.05 if KIND == "sigterm" else 0.0,
)
pipeline = build_demo_pipeline(load_reviews(60 if KIND != "sigterm" else 400), client=client,
                               checkpoint_dir=tempfile.mkdtemp(), checkpoint_interval=10,
                               concurrency=2)
pipeline.add_observer(Hook(exit_at="ResponseParser" if KIND == "system_exit" else None))

def announce_rows():  # tells the parent when the run has progress to lose
    while client.success_count < 5:
        time.sleep(0.01)
    print("ROWS DONE", flush=True)

threading.Thread(target=announce_rows, daemon=True).start()
raised = None
try:
    pipeline.execute()
except BaseException as error:
    raised = type(error).__name__
started = time.perf_counter()
handle.shutdown(timeout=5)
report(raised=raised, shutdown_s=time.perf_counter() - started)
"""

_ROWS = {
    "keyboard_interrupt": (
        "KeyboardInterrupt (Ctrl-C) during the LLM stage",
        "KeyboardInterrupt re-raised to the caller, as without ondine-otel",
    ),
    "system_exit": (
        "an exception ondine does not report (sys.exit() in a stage hook)",
        "SystemExit re-raised to the caller, as without ondine-otel",
    ),
    "sigterm": (
        "SIGTERM during the LLM stage (eviction, task timeout)",
        "the process exits with 128+15 after a bounded flush",
    ),
}


def _run_span(receiver: OtlpHttpReceiver) -> SpanView:
    spans = receiver.wait_for_spans(
        lambda found: any(s.name == semconv.SPAN_RUN for s in found), timeout=10
    )
    found = [s for s in spans if s.name == semconv.SPAN_RUN]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _error_runs(receiver: OtlpHttpReceiver) -> float:
    points = receiver.metric_points(semconv.METRIC_RUNS)
    total = 0.0
    for attrs, value in points:
        if attrs.get(semconv.LABEL_STATUS) == "error":
            total += float(value)  # type: ignore[arg-type]
    return total


def _sigterm_job(receiver: OtlpHttpReceiver) -> tuple[jobs.Finished, float]:
    """Start the slow job, SIGTERM it once its LLM stage runs; (outcome, seconds to exit)."""
    process = jobs.start(_CHILD.format(kind="sigterm", endpoint=receiver.endpoint))
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:  # the child says when some rows are done (progress to lose)
        if line.strip() == "ROWS DONE" or time.monotonic() > deadline:
            break
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    done = jobs.finish(process, timeout=60)
    return done, time.monotonic() - signalled


@pytest.mark.parametrize("kind", ["keyboard_interrupt", "system_exit", "sigterm"])
def test_a_killed_run_is_ended_exported_and_counted(
    kind: str, otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    receiver = otlp_http_receiver
    if kind == "sigterm":
        done, exit_s = _sigterm_job(receiver)
        measured_exit = f"exit {exit_s:.2f} s after the signal, status {done.returncode}"
    else:
        done = jobs.finish(jobs.start(_CHILD.format(kind=kind, endpoint=receiver.endpoint)))
        assert done.returncode == 0 and done.result is not None, done.explain()
        measured_exit = f"shutdown {done.result['shutdown_s']:.2f} s"
    spans = receiver.spans()
    runs = [s for s in spans if s.name == semconv.SPAN_RUN]
    run = runs[0] if len(runs) == 1 else None
    checkpoints = [e for e in run.events if e.name == semconv.EVENT_CHECKPOINT] if run else []
    errors = _error_runs(receiver)
    fault, sees = _ROWS[kind]
    figures.record(
        fault,
        sees,
        "run span ended with status ERROR and exported, ondine.runs{status=error} +1, "
        "checkpoint event on the run span",
        f"{len(runs)} run span(s), {len(checkpoints)} checkpoint event(s), "
        f"runs{{error}}={errors:g}; {measured_exit}",
    )
    if kind == "sigterm":
        # The conventional status: killed by the re-raised signal, or exit(128 + 15).
        assert done.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), done.explain()
    else:
        expected = "KeyboardInterrupt" if kind == "keyboard_interrupt" else "SystemExit"
        assert done.result is not None and done.result["raised"] == expected
        assert done.result["shutdown_s"] < 5.25
    assert run is not None, (f"{len(runs)} run spans", done.explain())
    assert run.is_error, run.status_message
    assert run.end_time_unix_nano >= run.start_time_unix_nano > 0
    assert checkpoints, [e.name for e in run.events]
    assert checkpoints[-1].attributes[semconv.ATTR_CHECKPOINT_SAVED] is True
    if kind == "sigterm":
        assert any(e.name == "exception" for e in run.events), [e.name for e in run.events]
    assert errors == 1, receiver.metric_names()


_STREAM_CHILD = """
import asyncio
import ondine_otel
handle = ondine_otel.instrument(otlp_endpoint={endpoint!r}, traces_exporter="otlp",
                                metrics_exporter="otlp", otlp_timeout=2000)
pipeline = build_demo_pipeline(load_reviews(400), client=OfflineLLMClient(latency_s=0.02),
                               checkpoint_dir=tempfile.mkdtemp(), concurrency=2)

async def consume():
    async for chunk in pipeline.execute_stream_async(chunk_size=10):
        print("CHUNK", flush=True)  # the parent signals once a chunk is done

asyncio.run(consume())
report(finished=True)
"""


def test_sigterm_between_a_streams_chunks_ends_the_stream_as_an_error(
    otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    """Contract 5.1: a stream stopped between chunks (here SIGTERM) ends as ERROR with what
    it had done: one run span for the whole stream, counted once as an error run."""
    process = jobs.start(_STREAM_CHILD.format(endpoint=otlp_http_receiver.endpoint))
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        if line.strip() == "CHUNK" or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    done = jobs.finish(process, timeout=60)
    assert done.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), done.explain()
    assert done.result is None  # the stream did not run to its end
    run = _run_span(otlp_http_receiver)
    processed = int(run.attributes.get(semconv.ATTR_ROWS_PROCESSED, 0))  # type: ignore[arg-type]
    figures.record(
        "SIGTERM between a stream's chunks (execute_stream_async)",
        "the process exits with 128+15 after a bounded flush",
        "one run span for the stream, ended ERROR with the rows done; runs{status=error} +1",
        f"run span {run.status_message[:60]!r}, {processed} of 400 rows done, "
        f"{run.attributes.get(semconv.ATTR_STREAM_CHUNKS)} chunks",
    )
    assert run.is_error and "SIGTERM" in run.status_message, run.status_message
    assert run.attributes[semconv.ATTR_STREAM_METHOD] == "execute_stream_async"
    assert 10 <= processed < 400, run.attributes
    assert _error_runs(otlp_http_receiver) == 1
