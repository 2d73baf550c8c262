"""Batch-API jobs beyond the happy path of test_batch_api.py: a repeated collect counts nothing,
a job submitted without telemetry is still seen by `ondine status`, a poll by hand is traced
and moves the in-flight gauges, a short CLI process carries a job's in-flight gauges on the
Pushgateway until the job is collected, the submit root carries ondine's ids, and ondine's own
console script under `opentelemetry-instrument` links its status trace to the submit.

The provider client is stubbed at ondine's boundary (batch_api_stub.py); ondine's own CLI
commands run in-process through click (`standalone_mode=False`, so their `sys.exit(1)` is a
SystemExit) or in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ondine.api import pipeline as pipeline_module
from ondine.cli.main import cli
from ondine.core.specifications import LLMSpec
from ondine.orchestration import RunRegistry
from ondine.orchestration.backends.provider_batch import ProviderBatchBackend
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import ondine_otel
from tests.modes import batch_cli, shape
from tests.modes.batch_api_stub import COMPLETION_TOKENS, PROMPT_TOKENS, install
from tests.modes.batch_cli import FAILING, ROWS, batch_builder
from tests.modes.conftest import Telemetry
from tests.support.otlp_receiver import OtlpHttpReceiver
from tests.support.services import Service
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
COMPLETED = ROWS - len(FAILING)


@pytest.fixture
def instrumented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """The instrumentor on in-memory providers, and the stubbed Batch API."""
    install(tmp_path / "api")
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    name = "batch-" + uuid.uuid4().hex[:8]
    instrumentor = ondine_otel.OndineInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, pipeline_name=name
    )
    try:
        yield Telemetry("instrument", name, exporter, reader, tracer_provider, meter_provider)
    finally:
        instrumentor.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def _command(*args: str) -> None:
    cli(list(args), standalone_mode=False)


def _submit(checkpoint_dir: Path) -> Any:
    return batch_builder(checkpoint_dir).build().submit(registry=RunRegistry(checkpoint_dir))


def test_a_second_collect_counts_nothing_and_fails_its_span(
    instrumented: Telemetry, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    handle = _submit(ckpt)
    _command("collect", str(handle.run_id), "--checkpoint-dir", str(ckpt))
    with pytest.raises(SystemExit) as refused:  # ondine: SUCCEEDED -> SUCCEEDED is invalid
        _command("collect", str(handle.run_id), "--checkpoint-dir", str(ckpt))
    assert refused.value.code == 1

    name = instrumented.pipeline_name
    assert instrumented.metric("ondine.tokens", pipeline=name, type="input") == (
        COMPLETED * PROMPT_TOKENS
    )
    assert instrumented.metric("ondine.tokens", pipeline=name, type="output") == (
        COMPLETED * COMPLETION_TOKENS
    )
    assert instrumented.metric("ondine.batch.jobs.finished", pipeline=name) == 1
    assert instrumented.metric("ondine.batch.jobs.finished", status="partial") == 1
    assert instrumented.metric("ondine.batch.requests", state="failed") == len(FAILING)
    collects = shape.named(instrumented.spans(), "ondine.batch.collect")
    assert [s.status.status_code for s in collects] == [StatusCode.UNSET, StatusCode.ERROR]
    assert collects[0].attributes["ondine.batch.status"] == "partial"
    # Collected: no longer in flight.
    assert instrumented.metric("ondine.batch.job.requests", run_id=str(handle.run_id)) == 0


def test_status_of_a_job_submitted_without_telemetry(tmp_path: Path) -> None:
    install(tmp_path / "api")
    ckpt = tmp_path / "ckpt"
    handle = _submit(ckpt)  # nothing instrumented yet
    assert not (ckpt / "otel").exists()
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = ondine_otel.OndineInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, pipeline_name="late"
    )
    try:
        _command("status", str(handle.run_id), "--checkpoint-dir", str(ckpt))
        telemetry = Telemetry("instrument", "late", exporter, reader)
        [status] = shape.named(telemetry.spans(), "ondine.batch.status")
        assert status.links == ()  # no submit trace to link to
        assert status.attributes["ondine.batch.run_id"] == str(handle.run_id)
        assert status.attributes["ondine.batch.status"] == "submitted_remote"
        assert status.attributes["ondine.batch.provider_job_id"] == handle.provider_job_id
        run = {"pipeline": "late", "run_id": str(handle.run_id)}
        assert telemetry.metric("ondine.batch.job.requests", state="total", **run) == ROWS
        assert telemetry.metric("ondine.batch.job.submitted.timestamp", **run) > 0
        sidecar = json.loads((ckpt / "otel" / f"{handle.run_id}.json").read_text())
        assert sidecar["traceparent"] is None and sidecar["requests"] == ROWS
    finally:
        instrumentor.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def test_a_poll_by_hand_is_linked_to_the_submit_and_moves_the_in_flight_gauges(
    instrumented: Telemetry, tmp_path: Path
) -> None:
    handle = _submit(tmp_path / "ckpt")
    run = {"pipeline": instrumented.pipeline_name, "run_id": str(handle.run_id)}
    assert instrumented.metric("ondine.batch.job.requests", state="completed", **run) == 0
    backend = ProviderBatchBackend(LLMSpec(provider="openai", model="gpt-4o-mini"))
    progress = backend.poll(handle.provider_job_id)

    spans = instrumented.spans()
    [submit] = shape.named(spans, "ondine.batch.submit")
    [poll] = shape.named(spans, "ondine.batch.poll")
    assert poll.context.trace_id != submit.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in poll.links] == [
        (submit.context.trace_id, submit.context.span_id)
    ]
    assert poll.attributes["ondine.batch.requests.completed"] == progress.completed == COMPLETED
    assert instrumented.metric("ondine.batch.job.requests", state="completed", **run) == (COMPLETED)
    assert instrumented.metric("ondine.batch.job.requests", state="failed", **run) == len(FAILING)
    stages = [s.name for s in shape.stages(spans)]
    assert stages == ["ondine.stage DataLoader", "ondine.stage PromptFormatter"]
    assert all(shape.parent(spans, s) is submit for s in shape.stages(spans))
    [upload] = shape.named(spans, "ondine.batch.upload")
    assert shape.parent(spans, upload) is submit
    assert upload.attributes["ondine.batch.provider_job_id"] == handle.provider_job_id


def test_the_submit_root_carries_the_ids_of_ondines_context(
    instrumented: Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract section 1: the root of a call carries the first context ondine made for it;
    for submit() that is the front half's context (which ondine drops afterwards)."""
    made: list[Any] = []

    class Recorded(pipeline_module.ExecutionContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(pipeline_module, "ExecutionContext", Recorded)
    _submit(tmp_path / "ckpt")
    [context] = made
    [submit] = shape.named(instrumented.spans(), "ondine.batch.submit")
    assert submit.context.trace_id == shape.otel_trace_id(str(context.trace_id))
    assert submit.context.span_id == shape.otel_span_id(str(context.span_id))
    assert submit.start_time is not None and submit.end_time is not None
    [loader] = shape.named(instrumented.spans(), "ondine.stage DataLoader")
    assert loader.start_time is not None and submit.start_time <= loader.start_time


def _groups(pushgateway: Service) -> list[dict[str, Any]]:
    with urllib.request.urlopen(pushgateway.url + "/api/v1/metrics", timeout=5) as response:
        groups: list[dict[str, Any]] = json.load(response)["data"]
    return groups


@pytest.mark.integration
def test_a_poll_by_hand_in_a_later_process_knows_the_job_from_its_record(
    tmp_path: Path,
) -> None:
    """The normal case: submitted by one process, polled by a script in another, which knows
    only the provider's job id; the job's record (next to ondine's registry) names the run."""
    with OtlpHttpReceiver() as receiver:
        settings = {"otlp_endpoint": receiver.endpoint, "metrics_exporter": "none"}
        fast = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
        run_id = batch_cli.run_id_of(batch_cli.run(tmp_path, settings, "submit", **fast))
        batch_cli.run(tmp_path, settings, "poll", run_id, **fast)
        spans = receiver.spans()
    [submit] = [s for s in spans if s.name == "ondine.batch.submit"]
    [poll] = [s for s in spans if s.name == "ondine.batch.poll"]
    assert [(link.trace_id, link.span_id) for link in poll.links] == [
        (submit.trace_id, submit.span_id)
    ]
    assert poll.trace_id != submit.trace_id
    assert poll.attributes["ondine.batch.run_id"] == run_id
    assert poll.attributes["openinference.span.kind"] == "CHAIN"
    assert poll.attributes["ondine.llm.provider"] == "openai"
    assert poll.attributes["ondine.llm.model"] == "gpt-4o-mini"
    assert poll.attributes["ondine.batch.requests.completed"] == COMPLETED
    sidecar = json.loads((tmp_path / "ckpt" / "otel" / f"{run_id}.json").read_text())
    assert sidecar["completed"] == COMPLETED  # the poll wrote what it saw back


@pytest.mark.integration
def test_a_short_process_leaves_the_job_in_flight_on_the_pushgateway_until_collected(
    tmp_path: Path, pushgateway: Service
) -> None:
    settings = {"pushgateway_url": pushgateway.url, "pipeline_name": "batch-push"}
    quiet = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    run_id = batch_cli.run_id_of(batch_cli.run(tmp_path, settings, "submit", **quiet))

    def job_group() -> dict[str, Any] | None:
        return next((g for g in _groups(pushgateway) if g["labels"].get("run_id") == run_id), None)

    group = job_group()
    assert group is not None and group["labels"]["pipeline"] == "batch-push"
    assert "ondine_batch_job_deadline_timestamp_seconds" in group
    batch_cli.run(tmp_path, settings, "status", run_id, **quiet)
    assert job_group() is not None  # still in flight after a status
    batch_cli.run(tmp_path, settings, "collect", run_id, **quiet)
    wait_until(lambda: job_group() is None, timeout=10)
    # Each process pushes its counters into a group of its own (an `instance` label): the
    # pipeline's numbers are their sum, as `sum by (pipeline)` reads them.
    requests: dict[str, float] = {}
    for group in _groups(pushgateway):
        labels = group["labels"]
        if labels.get("pipeline") != "batch-push" or "run_id" in labels:
            continue
        for metric in group.get("ondine_batch_requests_total", {}).get("metrics", []):
            state = metric["labels"]["state"]
            requests[state] = requests.get(state, 0.0) + float(metric["value"])
    assert requests == {"completed": COMPLETED, "failed": len(FAILING)}


@pytest.mark.integration
def test_ondine_status_under_zero_code_instrumentation_links_to_the_submit(
    tmp_path: Path,
) -> None:
    """`opentelemetry-instrument ondine status RUN_ID`: ondine's own console script, nothing
    added to it. (status reads only ondine's registry, so the provider stub is not needed.)"""
    quiet = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    run_id = batch_cli.run_id_of(
        batch_cli.run(tmp_path, {"pipeline_name": "zero-code"}, "submit", **quiet)
    )
    sidecar = json.loads((tmp_path / "ckpt" / "otel" / f"{run_id}.json").read_text())
    _, trace_hex, span_hex, _ = sidecar["traceparent"].split("-")
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    with OtlpHttpReceiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ONDINE_OTEL_"))}
        env.update({
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50",
            "ONDINE_OTEL_PIPELINE_NAME": "zero-code",
        })  # fmt: skip
        ondine = Path(sys.executable).with_name("ondine")
        done = subprocess.run(
            [str(launcher), str(ondine), "status", run_id, "--checkpoint-dir",
             str(tmp_path / "ckpt")],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        spans = receiver.wait_for_spans(
            lambda found: any(s.name == "ondine.batch.status" for s in found), timeout=10
        )
    [status] = [s for s in spans if s.name == "ondine.batch.status"]
    assert [(link.trace_id, link.span_id) for link in status.links] == [(trace_hex, span_hex)]
    assert status.attributes["ondine.batch.status"] == "submitted_remote"
    assert status.attributes["ondine.pipeline.name"] == "zero-code"
