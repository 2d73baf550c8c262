"""One scrape of /metrics while 1, 10 or 100 runs are in flight.

The runs are real: ondine pipelines of one row each, started on their own threads under one
`instrument()` set-up, whose only LLM call waits on a gate; they are active (start, progress,
cost gauges per ``run_id``) for as long as the gate is shut. The scrapes start once /metrics
shows every run, and each reads the whole page over HTTP, as Prometheus would.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import ondine_otel
from benchmarks.endpoints import scrape
from benchmarks.peer import RemoteSink
from benchmarks.session import SERVICE_NAME
from benchmarks.workload import GatedClient, Workload, build_pipeline

TARGET_RUNS = 100  # the count the target is set for (benchmarks.targets)
_RUN_ID = re.compile(rb'run_id="([^"]*)"')


def run_ids(page: bytes) -> set[bytes]:
    """The distinct run_id label values on a /metrics page."""
    return set(_RUN_ID.findall(page))


def measure(
    counts: Sequence[int],
    sink: RemoteSink,
    *,
    scrapes: int,
    progress: Callable[[str], None],
    deadline_s: float = 120.0,
) -> dict[str, dict[str, Any]]:
    """Per count of active runs: scrape times (ms) and what the page held."""
    return {
        str(n): _with_active_runs(
            n, sink, scrapes=scrapes, progress=progress, deadline_s=deadline_s
        )
        for n in counts
    }


def _with_active_runs(
    n: int,
    sink: RemoteSink,
    *,
    scrapes: int,
    progress: Callable[[str], None],
    deadline_s: float,
) -> dict[str, Any]:
    telemetry = ondine_otel.instrument(
        otlp_endpoint=sink.endpoint,
        prometheus_host="127.0.0.1",
        prometheus_port=0,
        service_name=SERVICE_NAME,
        pipeline_name="bench",
    )
    gate = threading.Event()
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="ondine-otel-bench-scrape-") as root:
        try:
            url = f"http://127.0.0.1:{telemetry.prometheus_port}/metrics"
            for i in range(n):
                client = GatedClient(gate)
                pipeline = build_pipeline(Workload("offline", 1), f"{root}/run-{i}", client=client)
                thread = threading.Thread(
                    target=_execute, args=(pipeline, failures), name=f"bench-run-{i}"
                )
                thread.start()
                threads.append(thread)
            page = _wait_for_runs(url, n, failures, time.monotonic() + deadline_s)
            times_ms: list[float] = []
            for _ in range(scrapes):
                started = time.perf_counter()
                page = scrape(url)
                times_ms.append((time.perf_counter() - started) * 1000)
        finally:
            gate.set()
            for thread in threads:
                thread.join(timeout=60)
            telemetry.shutdown()
    if failures:
        raise RuntimeError(f"a gated run failed: {failures[0]!r}")
    median = statistics.median(times_ms)
    progress(
        f"  {'scrape':<16} {n:>3} active runs  median {median:6.2f} ms  "
        f"min {min(times_ms):6.2f}  max {max(times_ms):6.2f}  ({len(page):,} bytes)"
    )
    return {
        "active_runs": n,
        "scrapes": len(times_ms),
        "scrape_ms": [round(t, 3) for t in times_ms],
        "median_ms": round(median, 3),
        "min_ms": round(min(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
        "page_bytes": len(page),
        "series": sum(1 for line in page.splitlines() if line and not line.startswith(b"#")),
        "run_ids_on_page": len(run_ids(page)),
    }


def _execute(pipeline: Any, failures: list[BaseException]) -> None:
    try:
        pipeline.execute()
    except BaseException as error:  # noqa: BLE001 - reported by the main thread
        failures.append(error)


def _wait_for_runs(url: str, n: int, failures: list[BaseException], deadline: float) -> bytes:
    """Poll /metrics until it shows `n` runs (every run started and reached its LLM call)."""
    while True:
        page = scrape(url)
        if len(run_ids(page)) >= n:
            return page
        if failures:
            raise RuntimeError(f"a gated run failed: {failures[0]!r}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"/metrics showed {len(run_ids(page))} of {n} active runs")
        time.sleep(0.05)
