"""SIGTERM ends the active run as an error, exports and pushes it, then exits as signalled.

A real job (the demo pipeline on a slow offline client) runs in a subprocess and is signalled
once its LLM stage is under way; its OTLP spans go to a receiver on 127.0.0.1, its metrics to a
real Pushgateway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.otlp_receiver import OtlpHttpReceiver
from tests.support.services import Service

pytestmark = pytest.mark.integration

_JOB = """
import json, os, signal, sys, tempfile, time
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import ondine_otel
from ondine_otel.demo.client import OfflineLLMClient
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import build_demo_pipeline

settings = json.loads(sys.argv[1])
settings_swallow = settings.pop("swallow", False)
if settings.pop("app_handler", False):
    def on_term(signum, frame):
        print("APP HANDLER", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, on_term)

class ReadyClient(OfflineLLMClient):
    # Says READY at its first call: the LLM stage (and its telemetry) is under way.
    ready = False
    def _delay(self, prompt):
        if not ReadyClient.ready:
            ReadyClient.ready = True
            print("READY", flush=True)
        return super()._delay(prompt)

handle = ondine_otel.instrument(**settings)
pipeline = build_demo_pipeline(
    load_reviews(200), client=ReadyClient(latency_s=0.2), concurrency=2,
    checkpoint_dir=tempfile.mkdtemp(),
)
swallow = settings_swallow
try:
    pipeline.execute()
except BaseException as error:
    print("RAISED " + type(error).__name__, flush=True)
    if not swallow:
        raise
    while True:  # an application that catches everything and carries on
        time.sleep(0.05)
print("FINISHED", flush=True)
"""


def run_and_signal(settings: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    """Start the job, SIGTERM it once its LLM stage runs; (returncode, stdout, seconds)."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_JOB), json.dumps(settings)],
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:  # blocks until the job prints READY (or exits)
            lines.append(line)
            if line.strip() == "READY":
                break
        assert lines and lines[-1].strip() == "READY", "".join(lines)[-3000:]
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        elapsed = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, "".join(lines) + rest, elapsed


def _gateway_samples(gateway: Service) -> list[Any]:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver() as server:
        yield server


def _run_spans(receiver: OtlpHttpReceiver) -> list[Any]:
    return [s for s in receiver.spans() if s.name == "ondine.pipeline"]


def test_sigterm_exports_the_run_as_an_error_and_exits_143(
    receiver: OtlpHttpReceiver, pushgateway: Service
) -> None:
    settings = {
        "otlp_endpoint": receiver.endpoint,
        "pushgateway_url": pushgateway.url,
        "pipeline_name": "sigterm",
    }
    code, output, elapsed = run_and_signal(settings)
    # Killed by the re-raised default SIGTERM: a shell reports 128+15; Popen reports -15.
    assert code == -signal.SIGTERM, output[-3000:]
    assert "FINISHED" not in output
    assert elapsed < 5.0 + 2.0  # the flush bound (shutdown_timeout) plus interpreter exit
    (run,) = _run_spans(receiver)
    assert run.is_error
    exceptions = [e for e in run.events if e.name == "exception"]
    assert exceptions, [e.name for e in run.events]
    assert exceptions[0].attributes["exception.type"].endswith("ProcessTerminated")
    assert "terminated by SIGTERM" in exceptions[0].attributes["exception.message"]
    assert "RAISED ProcessTerminated" in output  # ondine saw a Ctrl-C-like interrupt...
    checkpoints = [e for e in run.events if e.name == "ondine.checkpoint"]
    assert checkpoints, [e.name for e in run.events]  # ...and saved its checkpoint
    names = sorted({s.name for s in receiver.spans()})
    assert "ondine.stage LLMInvocation" in names, names
    errors = [
        s.value
        for s in _gateway_samples(pushgateway)
        if s.name == "ondine_runs_total"
        and s.labels.get("pipeline") == "sigterm"
        and s.labels.get("status") == "error"
    ]
    assert errors == [1.0]


def test_the_applications_own_handler_still_runs(receiver: OtlpHttpReceiver) -> None:
    settings = {"otlp_endpoint": receiver.endpoint, "app_handler": True}
    code, output, _ = run_and_signal(settings)
    assert code == 3 and "APP HANDLER" in output, output[-3000:]
    (run,) = _run_spans(receiver)
    assert run.is_error


def test_the_setting_turns_the_handler_off(receiver: OtlpHttpReceiver) -> None:
    code, output, _ = run_and_signal(
        {"otlp_endpoint": receiver.endpoint}, env={"ONDINE_OTEL_HANDLE_SIGNALS": "false"}
    )
    assert code == -signal.SIGTERM, output[-3000:]
    assert _run_spans(receiver) == []  # what every job got before: the run is lost


def test_a_hanging_collector_cannot_hold_the_exit_past_the_bound() -> None:
    """The flush after SIGTERM is bounded by shutdown_timeout, even when exports hang."""
    with socket.socket() as hanging:  # accepts connections (backlog), never answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        endpoint = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        code, output, elapsed = run_and_signal({"otlp_endpoint": endpoint, "shutdown_timeout": 1})
    assert code == -signal.SIGTERM, output[-3000:]
    assert elapsed < 1.0 + 1.5, elapsed


def test_a_job_that_swallows_the_interrupt_still_ends_within_the_bound(
    receiver: OtlpHttpReceiver,
) -> None:
    code, output, elapsed = run_and_signal(
        {"otlp_endpoint": receiver.endpoint, "shutdown_timeout": 1, "swallow": True}
    )
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert elapsed < 1.0 + 1.5, elapsed
    (run,) = _run_spans(receiver)
    assert run.is_error
