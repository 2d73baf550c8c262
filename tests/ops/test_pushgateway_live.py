"""Issue "pages you can trust", Pushgateway identity, live: successive job processes of one
pipeline each push to a group of their own, so a fast failure is never hidden by the value its
predecessor left; and a pushed pipeline that stops pushing is named by OndinePushesStopped.

The example job (deploy/demo/job.py) runs in fresh processes against a real Pushgateway that a
real Prometheus scrapes every second with the shipped rules (evaluated every second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.ops.fast_rules import fast_rule_files
from tests.support.services import (
    Service,
    prom_query,
    sample_values,
    start_prometheus_with_rules,
    wait_for_query,
)
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "deploy" / "demo" / "job.py"
PIPELINE = "pushed-live"
#: How long the test's override lets the pipeline go without a push.
PUSH_MAX_AGE_S = 4


def job_env(pushgateway: Service, pipeline: str, **extra: str) -> dict[str, str]:
    """The job's environment: push only (no scrape, no OTLP), to this Pushgateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ONDINE_OTEL_"))}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "ONDINE_OTEL_PUSHGATEWAY_URL": pushgateway.url,
        "ONDINE_OTEL_PIPELINE_NAME": pipeline,
        **extra,
    }


def failing_job(pushgateway: Service) -> subprocess.CompletedProcess[str]:
    """One process, one run that crashes after its first LLM call: over long before the
    default 15 s push interval, so only its start and final pushes reach the Pushgateway."""
    done = subprocess.run(
        [sys.executable, str(JOB), "--rows", "20", "--crash-last-after", "1"],
        cwd=ROOT,
        env=job_env(pushgateway, PIPELINE),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1 and "run failed" in done.stdout, done.stdout + done.stderr
    return done


def groups(pushgateway: Service) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{pushgateway.url}/api/v1/metrics", timeout=5) as response:
        data: list[dict[str, Any]] = json.load(response)["data"]
    return [g["labels"] for g in data if g["labels"].get("pipeline") == PIPELINE]


def test_each_failing_process_pages_and_a_silent_pipeline_is_named(
    tmp_path: Path, pushgateway: Service
) -> None:
    override = tmp_path / "thresholds.yml"
    override.write_text(
        "groups:\n"
        "  - name: thresholds\n"
        "    interval: 1s\n"
        "    rules:\n"
        "      - record: ondine:threshold_override:push_max_age_seconds\n"
        f"        expr: vector({PUSH_MAX_AGE_S})\n"
        f"        labels: {{pipeline: {PIPELINE}}}\n"
    )
    prometheus = start_prometheus_with_rules(
        tmp_path, [pushgateway.address], [*fast_rule_files(tmp_path), override]
    )
    failures = f'pipeline:ondine_runs_failed:increase10m{{pipeline="{PIPELINE}"}}'
    try:
        wait_for_query(prometheus, f'up{{instance="{pushgateway.address}"}} == 1')

        # The first process fails: its error series is new, the failure counts.
        failing_job(pushgateway)
        wait_for_query(prometheus, f"{failures} == 1", timeout=30)

        # Its successor fails the same way. In a shared group it would push
        # ondine_runs_total{status="error"} 1 over 1 and nothing would grow; in its own
        # group it is a second failure.
        failing_job(pushgateway)
        wait_for_query(prometheus, f"{failures} == 2", timeout=30)
        processes = {g["instance"] for g in groups(pushgateway) if "run_id" not in g}
        assert len(processes) == 2 and "" not in processes, groups(pushgateway)
        fired = wait_for_query(
            prometheus, f'ALERTS{{alertname="OndineRunFailed",pipeline="{PIPELINE}"}}'
        )
        assert fired[0]["metric"]["severity"] == "critical"

        # Nobody pushes any more: past the pipeline's allowed age, the silence is named,
        # although every series stays on the Pushgateway.
        stopped = f'ALERTS{{alertname="OndinePushesStopped",pipeline="{PIPELINE}"}}'
        assert prom_query(prometheus, stopped) == []
        alert = wait_for_query(prometheus, f'{stopped[:-1]},alertstate="firing"}}', timeout=30)
        assert alert[0]["metric"]["severity"] == "warning"
        age = wait_for_query(
            prometheus, f'pipeline:ondine_last_push:age_seconds{{pipeline="{PIPELINE}"}}'
        )
        assert sample_values(age)[0] > PUSH_MAX_AGE_S
        still_there = wait_for_query(
            prometheus, f'ondine_runs_total{{pipeline="{PIPELINE}",status="error"}}'
        )
        assert len(still_there) == 2
    finally:
        prometheus.stop()


def test_the_successor_pushes_when_its_run_starts(tmp_path: Path, pushgateway: Service) -> None:
    """The start push: a run's group exists, with its error series at 0, before the run
    ends; a failure after it is then an increase from 0, whatever the scrape timing."""
    del tmp_path
    env_pipeline = f"{PIPELINE}-start"
    seen: list[float] = []

    def error_series() -> list[float]:
        with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("ondine_runs_total{")
            and f'pipeline="{env_pipeline}"' in line
            and 'status="error"' in line
        ]

    # No periodic push (an hour's interval): only the run's start and end.
    env = job_env(pushgateway, env_pipeline, ONDINE_OTEL_PUSH_INTERVAL="3600")
    # A slow run (200 rows at 50 ms, one at a time) that crashes at its end.
    job = subprocess.Popen(
        [
            sys.executable,
            str(JOB),
            *("--rows", "200", "--latency-ms", "50"),
            "--crash-last-after",
            "150",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        # While it runs: its error series is on the Pushgateway, at 0.
        wait_until(lambda: seen.extend(error_series()) or seen, timeout=60, interval=0.1)
        assert seen[0] == 0.0 and job.poll() is None
        assert job.wait(timeout=120) == 1
        wait_until(lambda: error_series() == [1.0], timeout=15)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=10)
