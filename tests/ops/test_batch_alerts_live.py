"""The Batch-API alert fires for real: a job whose requests mostly fail, submitted by one short
process and collected by another (both pushing to a Pushgateway), reaches a real Alertmanager
through a real Prometheus running the shipped rules (sped up as in test_alerts_live.py).

The provider is stubbed at ondine's boundary (tests/modes/batch_api_stub.py): requests whose
prompt carries FAIL come back as per-request errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ops.test_alerts_live import (
    WebhookSink,
    fast_alertmanager_config,
    fast_rule_files,
    prometheus_alerts,
)
from tests.support.services import (
    Service,
    alertmanager_alerts,
    start_prometheus_with_rules,
    wait_for_query,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "batch-alerts-live"
ROWS, FAILING = 10, (0, 1, 2, 3, 4, 5, 6)

# One short process per command, as with ondine's CLI: instrumented, pushing at exit.
JOB = """
import sys
from pathlib import Path
import ondine_otel
from tests.modes.batch_api_stub import install

state, url, command = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
install(state / "api")
telemetry = ondine_otel.instrument(pushgateway_url=url, pipeline_name=sys.argv[4])
if command == "submit":
    from ondine import PipelineBuilder
    from ondine.orchestration import RunRegistry
    from tests.modes.offline import reviews

    failing = tuple(int(i) for i in sys.argv[5].split(","))
    handle = (
        PipelineBuilder.create()
        .from_dataframe(reviews(int(sys.argv[6]), failing), input_columns=["review"],
                        output_columns=["s"])
        .with_prompt("Sentiment of: {review}")
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-test")
        .with_execution_mode("provider_batch")
        .with_checkpoint_dir(str(state / "ckpt"))
        .build()
        .submit(registry=RunRegistry(state / "ckpt"))
    )
    print("RUN_ID " + str(handle.run_id), flush=True)
else:
    from ondine.cli.main import cli

    cli([command, sys.argv[5], "--checkpoint-dir", str(state / "ckpt")], standalone_mode=False)
telemetry.shutdown(timeout=5)
"""


def run_job(tmp_path: Path, pushgateway: Service, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ONDINE_OTEL_"))}
    env.update({"PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(JOB), str(tmp_path), pushgateway.url, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_mostly_failed_batch_job_reaches_alertmanager(
    tmp_path: Path,
    pushgateway: Service,
    alertmanager_factory: Callable[[str], Service],
) -> None:
    webhook = WebhookSink()
    alertmanager = alertmanager_factory(fast_alertmanager_config(webhook.url))
    prometheus = start_prometheus_with_rules(
        tmp_path, [pushgateway.address], fast_rule_files(tmp_path), alertmanager=alertmanager
    )
    try:
        wait_for_query(prometheus, f'up{{instance="{pushgateway.address}"}} == 1', timeout=30)
        failing = ",".join(str(i) for i in FAILING)
        out = run_job(tmp_path, pushgateway, "submit", PIPELINE, failing, str(ROWS))
        run_id = next(x for x in out.splitlines() if x.startswith("RUN_ID ")).split()[1]
        # In flight: the job's group holds its gauges, its outcomes exist at 0.
        job = f'{{pipeline="{PIPELINE}",run_id="{run_id}"}}'
        wait_for_query(prometheus, f"ondine_batch_job_deadline_timestamp_seconds{job}")
        wait_for_query(prometheus, f'ondine_batch_requests_total{{pipeline="{PIPELINE}"}}')
        run_job(tmp_path, pushgateway, "collect", PIPELINE, run_id)

        def fired() -> dict[str, Any] | None:
            return next(
                (a for a in alertmanager_alerts(alertmanager)
                 if a["labels"].get("alertname") == "OndineBatchRequestsMostlyFailed"
                 and a["labels"].get("pipeline") == PIPELINE),
                None,
            )  # fmt: skip

        alert = wait_until(
            fired, timeout=45, interval=0.5,
            message=lambda: f"prometheus alerts: {prometheus_alerts(prometheus)}",
        )  # fmt: skip
        assert alert["labels"] == {
            "alertname": "OndineBatchRequestsMostlyFailed",
            "pipeline": PIPELINE,
            "severity": "warning",
        }
        share = round(100 * len(FAILING) / ROWS)
        assert alert["annotations"]["description"] == (
            f"{share}% of the Batch-API requests of pipeline {PIPELINE} collected in the last "
            "hour failed at the provider (more than half): the job ran, but most rows have no "
            "answer."
        )
        assert [r["name"] for r in alert["receivers"]] == ["ondine-ticket"]
        # Collected: its in-flight group is gone from the Pushgateway, so no stuck job remains.
        wait_for_query(
            prometheus, f"absent(ondine_batch_job_deadline_timestamp_seconds{job})", timeout=20
        )
    finally:
        prometheus.stop()
        webhook.close()
