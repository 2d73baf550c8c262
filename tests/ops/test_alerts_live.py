"""Issue "Ops kit": the shipped alerts fire for real, from a real job to Alertmanager's API.

A real Prometheus loads the shipped rules (a copy whose evaluation interval and `for:` are
shortened programmatically, nothing else changed), scrapes an instrumented ondine job and the
Pushgateway it pushes to, and sends to a real Alertmanager running the shipped config (group
waits shortened, webhooks pointed at a receiver in this test). The job is the example job of
deploy/demo: one run with many skipped rows, then one that crashes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.fast_rules import fast_rule_files
from tests.support.services import (
    Service,
    alertmanager_alerts,
    sample_values,
    start_prometheus_with_rules,
    wait_for_query,
)
from tests.support.wait import free_port, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
JOB = ROOT / "deploy" / "demo" / "job.py"
PIPELINE = "alerts-live"
BUDGET_USD = 5.0
RUNBOOK_BASE = next(
    rule["labels"]["url"]
    for group in yaml.safe_load(
        (ROOT / "deploy/prometheus/rules/ondine-recording.yml").read_text()
    )["groups"]
    for rule in group["rules"]
    if rule.get("record") == "ondine:runbook_base_url"
)
SHIPPED_WEBHOOK = re.compile(r"^http://127\.0\.0\.1:5001(/.*)$")


# --- rewritten copies of the shipped files -----------------------------------------------


def fast_alertmanager_config(webhook_base: str) -> str:
    """The shipped config with 1 s group waits and its webhooks sent to ``webhook_base``."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())

    def speed_up(route: dict[str, Any]) -> None:
        route["group_wait"] = "1s"
        route["group_interval"] = "1s"
        for child in route.get("routes", []):
            speed_up(child)

    speed_up(config["route"])
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            match = SHIPPED_WEBHOOK.match(webhook["url"])
            assert match, webhook["url"]
            webhook["url"] = webhook_base + match.group(1)
    return yaml.safe_dump(config, sort_keys=False)


# --- a webhook receiver -------------------------------------------------------------------


class WebhookSink:
    """Collects Alertmanager's webhook notifications as (path, payload)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                sink.received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()


# --- the job --------------------------------------------------------------------------------


def start_job(port: int, pushgateway: Service, log: Path) -> subprocess.Popen[bytes]:
    """The example job: run 1 skips about 30 % of its rows, run 2 crashes, both with a
    budget; then it lingers so the last scrapes see the final counters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ONDINE_OTEL_"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
            "ONDINE_OTEL_PUSHGATEWAY_URL": pushgateway.url,
            "ONDINE_OTEL_PIPELINE_NAME": PIPELINE,
            "ONDINE_OTEL_PUSH_INTERVAL": "1",
        }
    )
    args = ["--rows", "600", "--runs", "2", "--latency-ms", "25", "--failure-rate", "0.3"]
    args += ["--crash-last-after", "20", "--budget-usd", str(BUDGET_USD), "--linger", "120"]
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(JOB), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def by_name(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["labels"]["alertname"]: a for a in alerts if a["labels"].get("pipeline") == PIPELINE}


# --- the test -------------------------------------------------------------------------------


def test_failed_rows_and_a_failed_run_reach_alertmanager(
    tmp_path: Path,
    pushgateway: Service,
    alertmanager_factory: Callable[[str], Service],
    webhook: WebhookSink,
) -> None:
    alertmanager = alertmanager_factory(fast_alertmanager_config(webhook.url))
    job_port = free_port()
    job_address = f"127.0.0.1:{job_port}"
    prometheus = start_prometheus_with_rules(
        tmp_path,
        [job_address, pushgateway.address],
        fast_rule_files(tmp_path),
        alertmanager=alertmanager,
    )
    job_log = tmp_path / "job.log"
    job: subprocess.Popen[bytes] | None = None
    try:
        # Work starts only once Prometheus has scraped (the Pushgateway target is up).
        wait_for_query(prometheus, f'up{{instance="{pushgateway.address}"}} == 1', timeout=30)
        job = start_job(job_port, pushgateway, job_log)

        def both_alerts() -> dict[str, dict[str, Any]] | None:
            found = by_name(alertmanager_alerts(alertmanager))
            wanted = {"OndineRunFailed", "OndineRowFailureRatioHigh"}
            return found if wanted <= set(found) else None

        def explain() -> str:
            return (
                f"alerts: {alertmanager_alerts(alertmanager)}\n"
                f"prometheus alerts: {prometheus_alerts(prometheus)}\n"
                f"job log:\n{job_log.read_text(errors='replace')[-3000:]}"
            )

        alerts = wait_until(both_alerts, timeout=45, interval=0.5, message=explain)

        failed = alerts["OndineRunFailed"]
        assert failed["labels"] == {
            "alertname": "OndineRunFailed",
            "pipeline": PIPELINE,
            "severity": "critical",
        }
        assert failed["annotations"] == {
            "summary": f"A run of pipeline {PIPELINE} failed.",
            "description": (
                f'ondine_runs_total{{status="error"}} of pipeline {PIPELINE} grew in the last '
                "10 minutes: a run ended with an error instead of finishing. Its trace (span "
                "ondine.pipeline with status ERROR) holds the exception."
            ),
            "runbook_url": f"{RUNBOOK_BASE}#ondinerunfailed",
        }
        assert [r["name"] for r in failed["receivers"]] == ["ondine-page"]

        ratio = alerts["OndineRowFailureRatioHigh"]
        assert ratio["labels"] == {
            "alertname": "OndineRowFailureRatioHigh",
            "pipeline": PIPELINE,
            "severity": "warning",
        }
        assert ratio["annotations"]["summary"] == (
            f"Too many rows of pipeline {PIPELINE} fail or are skipped."
        )
        assert ratio["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#ondinerowfailureratiohigh"
        share = re.fullmatch(
            rf"([\d.]+)% of the rows pipeline {PIPELINE} processed in the last 10 minutes "
            r"failed or were skipped by the error policy \(threshold 5%\)\.",
            ratio["annotations"]["description"],
        )
        assert share, ratio["annotations"]["description"]
        print(f"failure ratio in the alert: {share.group(1)} %")
        assert 10 < float(share.group(1)) < 60  # about 30 % of run 1's rows were skipped
        assert [r["name"] for r in ratio["receivers"]] == ["ondine-ticket"]

        # The critical alert of the pipeline inhibits its warning.
        def inhibited() -> dict[str, Any] | None:
            current = by_name(alertmanager_alerts(alertmanager))
            warning = current["OndineRowFailureRatioHigh"]
            return warning if warning["status"]["inhibitedBy"] else None

        warning = wait_until(inhibited, timeout=15, interval=0.5, message=explain)
        assert warning["status"]["state"] == "suppressed"
        assert warning["status"]["inhibitedBy"] == [failed["fingerprint"]]

        # The page went out to the critical webhook, grouped by alert name and pipeline.
        def paged() -> list[dict[str, Any]]:
            return [p for path, p in webhook.received if path == "/ondine/critical"]

        pages = wait_until(paged, timeout=15, interval=0.25, message=lambda: str(webhook.received))
        assert pages[0]["receiver"] == "ondine-page"
        assert pages[0]["groupLabels"] == {"alertname": "OndineRunFailed", "pipeline": PIPELINE}
        assert pages[0]["alerts"][0]["annotations"] == failed["annotations"]

        # The scraped process showed its error series at 0 before its first failure, so a
        # plain increase() over the scrape alone sees that failure.
        scraped = (
            f'ondine_runs_total{{status="error",pipeline="{PIPELINE}",instance="{job_address}"}}'
        )
        assert sample_values(wait_for_query(prometheus, f"min_over_time({scraped}[5m])")) == [0]
        assert sample_values(wait_for_query(prometheus, scraped)) == [1]
        assert sample_values(wait_for_query(prometheus, f"increase({scraped}[5m]) > 0"))

        # The budget rules joined the job's real active-run series while its runs were going.
        run = f'{{pipeline="{PIPELINE}"}}'
        budget = wait_for_query(
            prometheus, f"max_over_time(run:ondine_run_budget_usd:max{run}[5m])"
        )
        assert set(sample_values(budget)) == {BUDGET_USD}  # one series per run seen active
        projected = wait_for_query(
            prometheus, f"max_over_time(run:ondine_run_cost_usd:projected{run}[5m])"
        )
        assert 0 < max(sample_values(projected)) < BUDGET_USD

        check_runbook_queries(prometheus)
    finally:
        if job is not None:
            stop(job)
        prometheus.stop()


# --- the runbooks' queries ------------------------------------------------------------------

RUNBOOKS = ROOT / "deploy" / "RUNBOOKS.md"
# Metrics of the stack's components, which this test's Prometheus does not scrape: their
# queries must run, not return data.
STACK_METRICS = re.compile(r"\b(otelcol|prometheus|alertmanager)_[a-z_]+|\bjob=~")


def runbook_queries() -> list[str]:
    """Every query of a ```promql block of deploy/RUNBOOKS.md (a block is one query)."""
    blocks = re.findall(r"^ *```promql\n(.*?)^ *```$", RUNBOOKS.read_text(), re.M | re.S)
    return [" ".join(block.split()) for block in blocks]


def query_at(prometheus: Service, promql: str, at: float) -> list[dict[str, Any]]:
    """An instant query at time ``at``; raises when Prometheus rejects the query."""
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql, "time": f"{at:.3f}"}
    )
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{promql}: {error.read().decode(errors='replace')}") from error
    assert payload["status"] == "success", (promql, payload)
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def check_runbook_queries(prometheus: Service) -> None:
    """Each runbook query runs on this Prometheus, with the live job's pipeline, run and
    model in place of the placeholders; those over ondine's own series return data, at the
    last moment a run was active (as during an incident) or now (after the runs)."""
    queries = runbook_queries()
    assert len(queries) >= 30, queries
    # The run seen active longest (the first: the second crashes after 20 calls), at its
    # last active moment.
    budget = f'run:ondine_run_budget_usd:max{{pipeline="{PIPELINE}"}}'
    seen = wait_for_query(prometheus, f"count_over_time({budget}[5m])")
    longest = max(seen, key=lambda sample: float(sample["value"][1]))
    run_id = longest["metric"]["run_id"]
    active = f'timestamp(run:ondine_run_budget_usd:max{{run_id="{run_id}"}})'
    (last,) = sample_values(wait_for_query(prometheus, f"max_over_time({active}[5m:1s])"))
    model = wait_for_query(prometheus, "gen_ai_client_operation_duration_seconds_count")[0]
    values = {
        "<p>": PIPELINE,
        "<id>": run_id,
        "<model>": model["metric"]["gen_ai_request_model"],
    }
    empty = []
    for query in queries:
        concrete = query
        for placeholder, value in values.items():
            concrete = concrete.replace(placeholder, value)
        assert "<" not in concrete.replace("<=", ""), f"unknown placeholder in {query}"
        result = query_at(prometheus, concrete, last) or query_at(prometheus, concrete, time.time())
        if not result and not STACK_METRICS.search(concrete):
            empty.append(concrete)
    assert empty == [], "runbook queries that return nothing:\n" + "\n".join(empty)


def prometheus_alerts(prometheus: Service) -> Any:
    """Prometheus' own view of its alerts (pending and firing), for failure messages."""
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/alerts", timeout=5) as response:
        return json.loads(response.read())["data"]["alerts"]


def post_alerts(alertmanager: Service, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{alertmanager.url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_a_days_long_critical_alert_never_hides_spend_or_budget(
    alertmanager_factory: Callable[[str], Service], webhook: WebhookSink
) -> None:
    """The shipped inhibit rule on a real Alertmanager: OndineNoRecentSuccess (critical, can
    last days) suppresses the pipeline's row warning, but neither its spend nor its budget
    alert, which still reach the ticket receiver."""
    alertmanager = alertmanager_factory(fast_alertmanager_config(webhook.url))
    pipeline = {"pipeline": "nightly"}
    post_alerts(
        alertmanager,
        [
            {"labels": {"alertname": "OndineNoRecentSuccess", "severity": "critical", **pipeline}},
            {
                "labels": {
                    "alertname": "OndineRowFailureRatioHigh",
                    "severity": "warning",
                    **pipeline,
                }
            },
            {"labels": {"alertname": "OndineSpendRateHigh", "severity": "warning", **pipeline}},
            {
                "labels": {
                    "alertname": "OndineRunProjectedOverBudget",
                    "severity": "warning",
                    "run_id": "6f1c",
                    **pipeline,
                }
            },
        ],
    )

    def settled() -> dict[str, dict[str, Any]] | None:
        found = {a["labels"]["alertname"]: a for a in alertmanager_alerts(alertmanager)}
        row = found.get("OndineRowFailureRatioHigh")
        return found if len(found) == 4 and row and row["status"]["inhibitedBy"] else None

    alerts = wait_until(settled, timeout=15, interval=0.25, message=lambda: "not inhibited")
    source = alerts["OndineNoRecentSuccess"]["fingerprint"]
    assert alerts["OndineRowFailureRatioHigh"]["status"]["inhibitedBy"] == [source]
    for name in ("OndineSpendRateHigh", "OndineRunProjectedOverBudget"):
        assert alerts[name]["status"] == {"inhibitedBy": [], "silencedBy": [], "state": "active"}
        assert [r["name"] for r in alerts[name]["receivers"]] == ["ondine-ticket"]

    def ticketed() -> set[str]:
        return {
            alert["labels"]["alertname"]
            for path, payload in webhook.received
            if path == "/ondine/warning"
            for alert in payload["alerts"]
        }

    names = wait_until(
        lambda: (
            ticketed() >= {"OndineSpendRateHigh", "OndineRunProjectedOverBudget"} and ticketed()
        ),
        timeout=15,
        interval=0.25,
        message=lambda: str(webhook.received),
    )
    assert "OndineRowFailureRatioHigh" not in names
