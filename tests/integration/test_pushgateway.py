"""Pushgateway: every contract series pushed, shards kept apart, no dead run or process left
behind, scrapes and pushes never racing, a failed push retried once and reported once.

Jobs run in fresh interpreters through `instrument()` (global providers are once per process),
against a real Pushgateway on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ondine_otel.export import pushgateway as pushgateway_module
from ondine_otel.export.providers import PrometheusEndpoint
from ondine_otel.export.pushgateway import PushgatewayPusher, _view
from ondine_otel.telemetry.registry import RunRegistry
from tests.support.services import Service
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

_JOB = """
import os, sys, json, tempfile
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import ondine_otel
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import build_demo_pipeline
settings = json.loads(sys.argv[1])
rows = settings.pop("rows", 3)
handle = ondine_otel.instrument(**settings)
build_demo_pipeline(load_reviews(rows), checkpoint_dir=tempfile.mkdtemp(), concurrency=2).execute()
handle.shutdown(timeout=10)
"""


def run_job(**settings: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_JOB), json.dumps(settings)],
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _request(url: str, method: str = "GET", data: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(request, timeout=5) as response:
        body: bytes = response.read()
        return body


def samples(gateway: Service) -> list[Sample]:
    text = _request(f"{gateway.url}/metrics").decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


@pytest.fixture
def gateway(pushgateway: Service) -> Iterator[Service]:
    _request(f"{pushgateway.url}/api/v1/admin/wipe", method="PUT")
    yield pushgateway
    _request(f"{pushgateway.url}/api/v1/admin/wipe", method="PUT")


def test_the_genai_histograms_are_pushed_too(gateway: Service) -> None:
    run_job(pushgateway_url=gateway.url, pipeline_name="pg-all")
    pushed = [s for s in samples(gateway) if s.labels.get("job") == "ondine"]
    names = {s.name for s in pushed}
    for family in ("gen_ai_client_operation_duration_seconds", "gen_ai_client_token_usage"):
        assert f"{family}_count" in names, sorted(names)
    calls = [s.value for s in pushed if s.name == "gen_ai_client_operation_duration_seconds_count"]
    assert sum(calls) == 3  # one per LLM call, pushed once (in the pipeline's group)
    assert {s.labels["pipeline"] for s in pushed} == {"pg-all"}
    for name in ("ondine_runs_total", "ondine_rows_processed_total", "ondine_cost_usd_total"):
        assert name in names


def test_parallel_shards_of_one_pipeline_keep_their_own_counters(gateway: Service) -> None:
    results: list[BaseException] = []

    def shard(index: int, rows: int) -> None:
        try:
            run_job(
                pushgateway_url=gateway.url,
                pipeline_name="sharded",
                pushgateway_grouping=f"shard={index}",
                rows=rows,
            )
        except BaseException as error:  # noqa: BLE001 - reported below
            results.append(error)

    workers = [threading.Thread(target=shard, args=(i, rows)) for i, rows in ((0, 3), (1, 5))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=150)
    assert not results, results
    rows = {
        s.labels["shard"]: s.value
        for s in samples(gateway)
        if s.name == "ondine_rows_processed_total" and s.labels.get("pipeline") == "sharded"
    }
    assert rows == {"0": 3.0, "1": 5.0}


def _leave_run_group(gateway: Service, path: str) -> None:
    body = b'ondine_run_progress_ratio{pipeline="left"} 0.5\n'
    _request(f"{gateway.url}/metrics/job/ondine/{path}", method="PUT", data=body)


def test_a_killed_runs_group_is_removed_by_the_next_start(gateway: Service) -> None:
    _leave_run_group(gateway, "pipeline/left/run_id/killed-run")  # as a SIGKILLed job leaves it
    _leave_run_group(gateway, "pipeline/left/shard/7/run_id/other-worker")  # another shard's
    _leave_run_group(gateway, "pipeline/elsewhere/run_id/other-pipeline")
    run_job(pushgateway_url=gateway.url, pipeline_name="left")
    run_ids = {s.labels.get("run_id") for s in samples(gateway) if "run_id" in s.labels}
    assert run_ids == {"other-worker", "other-pipeline"}


class _Overlaps:
    """A collector that measures how many collections of its registry run at once."""

    def __init__(self) -> None:
        self.inside = self.most = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Any]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        threading.Event().wait(0.002)  # a collection that takes a moment, like a real one
        with self.lock:
            self.inside -= 1
        return iter(())


def test_scrapes_and_pushes_never_collect_at_the_same_time() -> None:
    """The reader's collector pops a shared deque, so two collections at once can lose data
    (opentelemetry-python#5258): HTTP scrapes and pushes of the registry are serialised."""
    endpoint = PrometheusEndpoint()
    provider = MeterProvider(metric_readers=[endpoint.reader])
    provider.get_meter("t").create_counter("ondine_race_total").add(1, {"pipeline": "p"})
    probe = _Overlaps()
    endpoint.registry.register(probe)
    misses: list[str] = []

    def hammer(kind: int) -> None:
        for _ in range(20):
            if kind % 2:
                text = generate_latest(endpoint.registry).decode()
            else:
                text = generate_latest(_view(endpoint.registry, lambda labels: True)).decode()
            if "ondine_race_total" not in text:
                misses.append(text)

    port = endpoint.serve("127.0.0.1", 0)
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    scrapes = [
        threading.Thread(
            target=lambda: [_request(f"http://127.0.0.1:{port}/metrics") for _ in range(10)]
        )
        for _ in range(2)
    ]
    try:
        for thread in threads + scrapes:
            thread.start()
        for thread in threads + scrapes:
            thread.join(timeout=60)
    finally:
        endpoint.close()
        provider.shutdown()
    assert probe.most == 1, f"{probe.most} collections overlapped"
    assert misses == []


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A Pushgateway stand-in answering 503 to the first `fail` pushes, then 200."""

    fail = 0
    calls: ClassVar[list[str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).calls.append(f"{self.command} {self.path}")
        failing = type(self).fail > 0
        type(self).fail -= 1
        self.send_response(503 if failing else 200)
        body = b'{"status":"success","data":[]}' if self.command == "GET" else b""
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("fail", "warnings"), [(1, 0), (1000, 1)])
def test_a_failed_push_is_retried_once_and_reported_once(fail: int, warnings: int) -> None:
    _Flaky.fail, _Flaky.calls = fail, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = run_job(pushgateway_url=url, pipeline_name="flaky")
    finally:
        server.shutdown()
        server.server_close()
    output = done.stdout + done.stderr  # ondine renders warnings with Rich, on stdout
    assert output.count("ondine-otel: pushing to the") == warnings, output[-3000:]
    posts = [c for c in _Flaky.calls if c.startswith("POST ")]
    if fail == 1:  # the first request failed and was retried: each push landed
        assert _Flaky.calls[0] == _Flaky.calls[1]
    else:  # every push tried exactly twice
        assert len(posts) % 2 == 0 and posts[0] == posts[1]


def _push_time(gateway: Service, labels: dict[str, str]) -> float:
    groups = json.loads(_request(f"{gateway.url}/api/v1/metrics"))["data"]
    (group,) = [g for g in groups if g["labels"] == labels]
    return float(group["push_time_seconds"]["metrics"][0]["value"])


def test_groups_of_dead_processes_are_cleaned_and_live_ones_kept(
    gateway: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process deletes the groups of its pipeline's processes that nobody pushed to for
    STALE_GROUP_AGE_S (dead: a live process pushes every interval), and nothing else: not a
    recent peer's, not the shared last-success group, not another pipeline's or shard's."""
    body = b'ondine_runs_total{status="error"} 1\n'
    dead = {"job": "ondine", "pipeline": "swept", "instance": "dead-process"}
    _request(f"{gateway.url}/metrics/job/ondine/pipeline/swept/instance/dead-process", "PUT", body)
    # Let the dead group age (a condition on the gateway's own clock, not a fixed sleep).
    wait_until(lambda: time.time() - _push_time(gateway, dead) > 2.0, timeout=10, interval=0.1)
    kept = [
        "pipeline/swept/instance/live-peer",  # pushed just now
        "pipeline/swept",  # the shared group (last success)
        "pipeline/other/instance/dead-elsewhere",  # another pipeline
    ]
    for path in kept:
        _request(f"{gateway.url}/metrics/job/ondine/{path}", "PUT", body)
    live = {"job": "ondine", "pipeline": "swept", "instance": "live-peer"}
    # Stale means older than halfway between the two ages.
    ages = [time.time() - _push_time(gateway, labels) for labels in (dead, live)]
    monkeypatch.setattr(pushgateway_module, "STALE_GROUP_AGE_S", sum(ages) / 2)
    pusher = PushgatewayPusher(
        gateway.url, CollectorRegistry(), runs=RunRegistry(), pipeline_label=str
    )
    pusher.sweep("swept")
    left = {
        tuple(sorted(g["labels"].items()))
        for g in json.loads(_request(f"{gateway.url}/api/v1/metrics"))["data"]
    }
    assert tuple(sorted(dead.items())) not in left
    assert left == {
        tuple(sorted(live.items())),
        (("job", "ondine"), ("pipeline", "swept")),
        (("instance", "dead-elsewhere"), ("job", "ondine"), ("pipeline", "other")),
    }
