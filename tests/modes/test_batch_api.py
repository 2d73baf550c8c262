"""Issue 14, item 4: a Batch-API job (`with_execution_mode("provider_batch")`) is traced and
metered end to end, across processes: `submit()` is a traced run, `ondine status` / `ondine
collect` in later processes are traced and linked to the submit trace, tokens and cost are
counted once (at collect), and the job's requests are metered.

The provider client is stubbed at ondine's boundary (`ProviderBatchBackend._ensure_client`, as
ondine's own tests do); see batch_api_stub.py.

Today: 0 spans and no metrics in every process (submit() calls no observer hook; the CLI
commands run no pipeline).

TODO(issue 14, proposal in the mode notes; settle the names in the telemetry contract):
- spans: `ondine.batch.submit` (root of the submit trace; stage spans for the front half under
  it), `ondine.batch.status`, `ondine.batch.collect` (roots of their own traces, each with a
  Link to the submit root, read from a sidecar file next to ondine's run registry);
  attributes `ondine.batch.run_id` (ondine's RunRegistry id), `ondine.batch.provider_job_id`,
  `ondine.batch.requests` (requests submitted), `ondine.llm.provider`, `ondine.llm.model`;
  collect adds `ondine.batch.requests.completed` / `.failed`, `ondine.tokens.input` /
  `.output`, `ondine.cost.usd`.
- metrics: `ondine.batch.jobs.submitted` {pipeline, provider, model},
  `ondine.batch.requests` {pipeline, provider, model, state=completed|failed} at collect, and
  the run's tokens and cost in the usual `ondine.tokens` / `ondine.cost.usd`, priced at the
  provider's batch rates (litellm's `*_cost_per_token_batches`) since ondine's CLI collect
  prices nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import litellm
import pytest
from ondine.orchestration import RunRegistry
from ondine.orchestration.backends.provider_batch import ProviderBatchBackend

from tests.modes import batch_cli, shape
from tests.modes.batch_api_stub import COMPLETION_TOKENS, PROMPT_TOKENS, StubBatchClient
from tests.modes.batch_cli import FAILING, ROWS, batch_builder
from tests.modes.conftest import Telemetry
from tests.support.otlp_receiver import OtlpHttpReceiver, SpanView

ONDINE_RUN_COLUMNS = (
    "run_id",
    "status",
    "spec_snapshot",
    "metrics",
    "provider_job_id",
    "created_at",
    "updated_at",
)


def _expected_cost(completed: int) -> float:
    price = litellm.model_cost["gpt-4o-mini"]
    return completed * (
        PROMPT_TOKENS * price["input_cost_per_token_batches"]
        + COMPLETION_TOKENS * price["output_cost_per_token_batches"]
    )


# with_observer alone cannot see a submit(): ondine creates that observer only inside
# execute(), and ondine-otel patches nothing at import (README, Known limits).
@pytest.mark.parametrize("telemetry", ["instrument", "add_observer"], indirect=True)
def test_submit_is_a_traced_run(
    telemetry: Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = StubBatchClient(tmp_path / "api")
    monkeypatch.setattr(ProviderBatchBackend, "_ensure_client", lambda self: client)
    pipeline = telemetry.build(batch_builder(tmp_path / "ckpt"))
    handle = pipeline.submit(registry=RunRegistry(tmp_path / "ckpt"))
    assert handle.provider_job_id and handle.spec_snapshot["total_prompts"] == ROWS

    spans = telemetry.spans()
    assert len(shape.trace_ids(spans)) == 1, f"{len(spans)} spans"
    submit = shape.named(spans, "ondine.batch.submit")
    assert len(submit) == 1 and shape.roots(spans) == submit
    attributes = submit[0].attributes or {}
    assert attributes["ondine.batch.run_id"] == str(handle.run_id)
    assert attributes["ondine.batch.provider_job_id"] == handle.provider_job_id
    assert attributes["ondine.batch.requests"] == ROWS
    name = telemetry.pipeline_name
    assert telemetry.metric("ondine.batch.jobs.submitted", pipeline=name) == 1
    assert telemetry.metric("ondine.tokens", pipeline=name) == 0  # counted at collect only


def _root(spans: list[SpanView], name: str) -> SpanView:
    found = [s for s in spans if s.name == name and not s.parent_span_id]
    assert len(found) == 1, sorted({s.name for s in spans})
    return found[0]


@pytest.mark.integration
def test_a_job_submitted_in_one_process_and_collected_in_another_is_two_linked_traces(
    tmp_path: Path,
) -> None:
    with OtlpHttpReceiver() as receiver:

        def job(service: str, *args: str) -> str:
            settings = {"otlp_endpoint": receiver.endpoint, "service_name": service,
                        "pipeline_name": "batch-job"}  # fmt: skip
            return batch_cli.run(tmp_path, settings, *args, OTEL_BSP_SCHEDULE_DELAY="50")

        run_id = batch_cli.run_id_of(job("submitter", "submit"))
        job("poller", "status", run_id)
        job("collector", "collect", run_id)
        spans = receiver.wait_for_spans(
            lambda found: any(s.name == "ondine.batch.collect" for s in found), timeout=10
        )
        submit = _root(spans, "ondine.batch.submit")
        status = _root(spans, "ondine.batch.status")
        collect = _root(spans, "ondine.batch.collect")
        assert len({submit.trace_id, status.trace_id, collect.trace_id}) == 3
        for later in (status, collect):
            assert [(link.trace_id, link.span_id) for link in later.links] == [
                (submit.trace_id, submit.span_id)
            ]
            assert later.attributes["ondine.batch.run_id"] == run_id
        assert submit.resource["service.name"] == "submitter"
        assert collect.resource["service.name"] == "collector"

        completed = ROWS - len(FAILING)
        assert collect.attributes["ondine.batch.requests.completed"] == completed
        assert collect.attributes["ondine.batch.requests.failed"] == len(FAILING)
        tokens = receiver.wait_for_metric("ondine.tokens")
        by_type = {attrs["type"]: value for attrs, value in tokens}
        assert by_type == {
            "input": completed * PROMPT_TOKENS,
            "output": completed * COMPLETION_TOKENS,
        }
        assert all(attrs["pipeline"] == "batch-job" for attrs, _ in tokens)
        [(_, cost)] = receiver.metric_points("ondine.cost.usd")
        assert cost == pytest.approx(_expected_cost(completed))
        requests = {
            attrs["state"]: value
            for attrs, value in receiver.metric_points("ondine.batch.requests")
        }
        assert requests == {"completed": completed, "failed": len(FAILING)}

    registry_dir = tmp_path / "ckpt"
    sidecars = [p for p in registry_dir.rglob("*") if p.is_file() and run_id in p.name]
    assert sidecars, "the submit's trace context is kept next to ondine's run registry"
    assert all("sk-test" not in p.read_text() for p in sidecars)  # never credentials
    with sqlite3.connect(registry_dir / "runs.db") as db:  # ondine's schema, untouched
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    assert columns == list(ONDINE_RUN_COLUMNS)
