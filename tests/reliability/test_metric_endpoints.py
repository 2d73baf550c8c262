"""Prometheus port already taken; Pushgateway refusing, answering 503, or 2 s per request.

A taken port is a set-up error (ConfigError naming the setting) on every entry. A bad
Pushgateway must cost the job nothing: the pushes happen on the pusher's thread, each failed
push is retried once, a lasting failure is logged (once per kind), and shutdown stays bounded.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability import faults, jobs
from tests.reliability.conftest import Figures

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SHUTDOWN_TIMEOUT_S = 5.0
REPETITIONS = 2

_PORT_CHILD = """
import ondine_otel
from ondine import PipelineBuilder
port = int(sys.argv[1])
errors, seconds = {}, {}
started = time.perf_counter()
try:
    ondine_otel.instrument(prometheus_port=port, prometheus_host="127.0.0.1")
except ondine_otel.ConfigError as error:
    errors["instrument"] = str(error)
seconds["instrument"] = time.perf_counter() - started
started = time.perf_counter()
try:
    pipeline = (
        PipelineBuilder.create()
        .from_dataframe(load_reviews(3), input_columns=["review"], output_columns=["sentiment"])
        .with_prompt("{review}")
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-offline")
        .with_custom_llm_client(OfflineLLMClient())
        .with_checkpoint_dir(tempfile.mkdtemp())
        .with_observer("otel", {"prometheus_port": port, "prometheus_host": "127.0.0.1"})
        .build()
    )
    pipeline.execute()
except ondine_otel.ConfigError as error:
    errors["with_observer"] = str(error)
except Exception as error:
    errors["with_observer"] = "not a ConfigError: " + repr(error)
seconds["with_observer"] = time.perf_counter() - started
report(errors=errors, seconds=seconds,
       tracer=type(__import__("opentelemetry").trace.get_tracer_provider()).__name__)
"""


def test_prometheus_port_in_use_is_a_clear_setup_error(figures: Figures) -> None:
    with faults.busy_port() as port:
        result = jobs.run(_PORT_CHILD.replace("sys.argv[1]", str(port)))
    errors, seconds = result["errors"], result["seconds"]
    figures.record(
        "Prometheus port already in use (instrument() and with_observer)",
        "ConfigError at set-up naming prometheus_port / OTEL_EXPORTER_PROMETHEUS_PORT",
        "fails before the job starts; nothing installed, no port held",
        "error after " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in seconds.items()),
    )
    assert set(errors) == {"instrument", "with_observer"}, errors
    for text in errors.values():
        assert "prometheus_port" in text and str(port) in text, text
    assert result["tracer"] == "ProxyTracerProvider"


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
for rep in range({REPETITIONS}):
    wall, result = job()
    walls["none"].append(wall)
    outputs.append(frame_of(result))
    handle = ondine_otel.instrument(pushgateway_url=gateway, traces_exporter="none",
                                    metrics_exporter="none")
    wall, result = job()
    walls["push"].append(wall)
    outputs.append(frame_of(result))
    started = time.perf_counter()
    handle.shutdown(timeout={SHUTDOWN_TIMEOUT_S})
    shutdowns.append(time.perf_counter() - started)
report(walls=walls, shutdowns=shutdowns, same=all(o == outputs[0] for o in outputs),
       logs=LOG_RECORDS)
"""


@contextlib.contextmanager
def _gateway(fault: str) -> Iterator[tuple[str, Any]]:
    if fault == "refused":
        with faults.refusing_port() as port:
            yield f"http://127.0.0.1:{port}", None
    elif fault == "unavailable":
        with faults.HttpFaultServer(503) as failing:
            yield failing.endpoint, failing
    else:
        with faults.HttpFaultServer(200, delay=2.0) as slow:
            yield slow.endpoint, slow


_NAMES = {
    "refused": "Pushgateway down (connection refused)",
    "unavailable": "Pushgateway answers 503",
    "slow": "Pushgateway answers after 2 s per request",
}


@pytest.mark.parametrize("fault", ["refused", "unavailable", "slow"])
def test_a_bad_pushgateway_costs_the_job_nothing(fault: str, figures: Figures) -> None:
    with _gateway(fault) as (url, server):
        result = jobs.run(_PUSH_CHILD.replace("sys.argv[1]", repr(url)), timeout=180)
        posts = len(server.requests("POST")) if server is not None else None
    ratio = statistics.median(result["walls"]["push"]) / statistics.median(result["walls"]["none"])
    worst = max(result["shutdowns"])
    lines = [r["text"] for r in result["logs"]]
    failing = fault != "slow"
    figures.record(
        _NAMES[fault],
        "one log line per failing operation (sweep, push, delete); the job's output as usual",
        "run ends on time, each push retried once, failure reported, shutdown bounded",
        f"wall {ratio:.2f}x without Pushgateway; shutdown max {worst:.2f} s "
        f"(timeout {SHUTDOWN_TIMEOUT_S:g} s); "
        + (f"{posts} push-add attempts for {REPETITIONS} run ends; " if posts is not None else "")
        + f"{len(lines)} log lines",
    )
    assert result["same"]
    assert ratio < 1.5, result["walls"]
    assert worst < SHUTDOWN_TIMEOUT_S + 0.5, result["shutdowns"]
    if failing:
        assert 1 <= len(lines) <= 3 and len(set(lines)) == len(lines), lines
        if posts is not None:  # one run per set-up: its final push-add, then one retry
            assert posts == 2 * REPETITIONS, posts
    else:
        assert lines == [], lines
        assert posts is not None and posts >= REPETITIONS  # every run's push got through
