"""The Batch-API alert fires for real: a job whose requests mostly fail, submitted by one short
process and collected by another (both pushing to a Pushgateway), reaches a real Alertmanager
through a real Prometheus running the shipped rules (sped up as in test_alerts_live.py).

The provider is stubbed at ondine's boundary (tests/modes/batch_api_stub.py): requests whose
prompt carries FAIL come back as per-request errors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.modes import batch_cli
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

PIPELINE = "batch-alerts-live"
ROWS, FAILING = 10, (0, 1, 2, 3, 4, 5, 6)


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
        settings = {"pushgateway_url": pushgateway.url, "pipeline_name": PIPELINE}
        quiet = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
        failing = ",".join(str(i) for i in FAILING)
        out = batch_cli.run(tmp_path, settings, "submit", str(ROWS), failing, **quiet)
        run_id = batch_cli.run_id_of(out)
        # In flight: the job's group holds its gauges, its outcomes exist at 0.
        job = f'{{pipeline="{PIPELINE}",run_id="{run_id}"}}'
        wait_for_query(prometheus, f"ondine_batch_job_deadline_timestamp_seconds{job}")
        wait_for_query(prometheus, f'ondine_batch_requests_total{{pipeline="{PIPELINE}"}}')
        batch_cli.run(tmp_path, settings, "collect", run_id, **quiet)

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
