"""Prometheus port already taken; Pushgateway refusing, answering 503, or 2 s per request.

A taken port is a set-up error (ConfigError naming the setting) on every entry. A bad
Pushgateway must cost the job nothing: the pushes happen on the pusher's thread, each failed
push is retried once, a lasting failure is logged (once per kind), and shutdown stays bounded.
"""

from __future__ import annotations

import contextlib
import statistics
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.reliability import faults, jobs
from tests.reliability.conftest import Figures
from tests.support.services import Service

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SHUTDOWN_TIMEOUT_S = 3.0
REPETITIONS = 5

_PORT_CHILD = """
import ondine_otel
from ondine import PipelineBuilder
port = int(sys.argv[1])
errors = {}
started = time.perf_counter()
try:
    handle = ondine_otel.instrument(prometheus_port=port, prometheus_host="127.0.0.1")
except Exception as error:
    errors["instrument"] = repr(error)
seconds = time.perf_counter() - started
try:
    result = build_demo_pipeline(load_reviews(3), checkpoint_dir=tempfile.mkdtemp()).execute()
    rows = len(frame_of(result)["sentiment"])
except Exception as error:
    errors["job"] = repr(error)
    rows = 0
report(errors=errors, seconds=seconds, rows=rows, logs=LOG_RECORDS, served=handle.prometheus_port,
       tracer=type(__import__("opentelemetry").trace.get_tracer_provider()).__name__)
"""


def test_prometheus_port_in_use_never_stops_the_job(figures: Figures) -> None:
    with faults.busy_port() as port:
        result = jobs.run(_PORT_CHILD.replace("sys.argv[1]", str(port)))
    named = [r["text"] for r in result["logs"] if "OTEL_EXPORTER_PROMETHEUS_PORT" in r["text"]]
    figures.record(
        "Prometheus port already in use",
        "one warning naming the port and OTEL_EXPORTER_PROMETHEUS_PORT / prometheus_port; the "
        "job and the rest of the telemetry run (the same under every entry)",
        "never breaks a job; says once what it could not serve and how to fix it",
        f"instrument() returned after {result['seconds'] * 1000:.0f} ms; job "
        f"{result['rows']}/3 rows, {len(named)} warning naming the setting",
    )
    assert result["errors"] == {}
    assert result["rows"] == 3 and result["served"] is None
    assert result["tracer"] == "TracerProvider"  # traces are still set up
    assert len(named) == 1 and str(port) in named[0], result["logs"]


_PUSH_CHILD = f"""
import ondine_otel
gateway = sys.argv[1]
df = load_reviews(1500)

def job():
    pipeline = build_demo_pipeline(df, checkpoint_dir=tempfile.mkdtemp())
    started = time.perf_counter()
    result = pipeline.execute()
    return time.perf_counter() - started, result

job()  # warm-up
walls, shutdowns, outputs = {{"none": [], "push": []}}, [], []
common = dict(traces_exporter="none", prometheus_port=0, prometheus_host="127.0.0.1",
              reconfigure=True)
for rep in range({REPETITIONS}):
    # The same metrics set-up without a Pushgateway and with the bad one, alternating.
    for condition in (("none", "push") if rep % 2 == 0 else ("push", "none")):
        extra = dict(pushgateway_url=gateway) if condition == "push" else {{}}
        handle = ondine_otel.instrument(**common, **extra)
        wall, result = job()
        walls[condition].append(wall)
        outputs.append(frame_of(result))
        started = time.perf_counter()
        handle.shutdown(timeout={SHUTDOWN_TIMEOUT_S})
        if condition == "push":
            shutdowns.append(time.perf_counter() - started)
report(walls=walls, shutdowns=shutdowns, same=all(o == outputs[0] for o in outputs),
       logs=LOG_RECORDS)
"""


@contextlib.contextmanager
def _gateway(fault: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    if fault == "refused":
        with faults.refusing_port() as port:
            yield f"http://127.0.0.1:{port}", None
    elif fault == "unavailable":
        with faults.HttpFaultServer(503) as failing:
            yield failing.endpoint, failing
    else:  # a real Pushgateway that answers every request 2 s late
        gateway: Service = request.getfixturevalue("pushgateway")
        with faults.DelayingProxy(gateway.port, delay=2.0) as slow:
            yield slow.endpoint, gateway


def _pushed_runs(gateway: Service) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ondine_runs_total" and sample.labels.get("status") == "success"
    )


_NAMES = {
    "refused": "Pushgateway down (connection refused)",
    "unavailable": "Pushgateway answers 503",
    "slow": "Pushgateway answers after 2 s per request",
}


@pytest.mark.parametrize("fault", ["refused", "unavailable", "slow"])
def test_a_bad_pushgateway_costs_the_job_nothing(
    fault: str, figures: Figures, request: pytest.FixtureRequest
) -> None:
    with _gateway(fault, request) as (url, server):
        result = jobs.run(_PUSH_CHILD.replace("sys.argv[1]", repr(url)), timeout=180)
        if isinstance(server, faults.HttpFaultServer):
            posts: int | None = len(server.requests("POST"))
            landed = 0.0
        else:
            posts = None
            landed = _pushed_runs(server) if server is not None else 0.0
    ratio = statistics.median(result["walls"]["push"]) / statistics.median(result["walls"]["none"])
    worst = max(result["shutdowns"])
    lines = [r["text"] for r in result["logs"]]
    failing = fault != "slow"
    figures.record(
        _NAMES[fault],
        "one log line per failing operation (sweep, push, delete); the job's output as usual",
        "run ends on time, each push retried once, failure reported, shutdown bounded",
        f"wall {ratio:.2f}x the same set-up without Pushgateway; shutdown max {worst:.2f} s "
        f"(timeout {SHUTDOWN_TIMEOUT_S:g} s); "
        + (f"{posts} push-add attempts for {REPETITIONS} runs; " if posts is not None else "")
        + (f"the push landed (runs_total={landed:g}); " if not failing else "")
        + f"{len(lines)} log lines",
    )
    assert result["same"]
    assert ratio < 1.5, result["walls"]
    assert worst < SHUTDOWN_TIMEOUT_S + 0.25, result["shutdowns"]  # scheduling slack
    if failing:
        assert 1 <= len(lines) <= 3 and len(set(lines)) == len(lines), lines
        if posts is not None:  # one run per set-up: its start and final push-adds, each retried
            assert posts == 2 * 2 * REPETITIONS, posts
    else:  # slow is not broken: no retry noise, and the real gateway got the push
        assert lines == [], lines
        assert landed >= 1
