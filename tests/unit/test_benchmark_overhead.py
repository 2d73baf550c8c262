"""`make bench` still runs end to end: every variant and scenario, tiny sizes, no ratios asserted.

The benchmark runs in a fresh interpreter, as `make bench` does: it installs a global tracer
provider and peers that patch litellm, which must not leak into the other tests.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gctime, overhead, runner, stats, variants
from benchmarks.endpoints import HangingEndpoint, OtlpSink, refused_endpoint, scrape
from benchmarks.peer import Peer, RemoteHanging, RemoteScraper, RemoteSink
from benchmarks.peer import peer as bench_peer

ROOT = Path(__file__).resolve().parents[2]


def _bench(module: str, *args: str, timeout: float) -> str:
    """Run `python -m benchmarks.<module> ARGS` in a fresh interpreter; its stdout."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OTEL_TRACES_SAMPLER": "off"}
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str]:
    out = tmp_path_factory.mktemp("bench")
    stdout = _bench("overhead", "--quick", "--output-dir", str(out), timeout=600)
    doc = json.loads((out / "results" / "latest.json").read_text())
    return doc, (out / "RESULTS.md").read_text(), stdout


def test_every_scenario_and_variant_ran(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    assert doc["quick"] is True
    # A shell's OTEL_* settings must not reach the measured set-ups.
    assert "OTEL_TRACES_SAMPLER" in doc["environment_dropped"]
    scenarios = doc["scenarios"]
    assert list(scenarios) == list(overhead._SCENARIOS)
    expected = {
        "instant_10k": {
            "bare",
            "bare_2",
            "ours",
            "ours_no_chat_spans",
            "ours_otlp_refused",
            "ours_otlp_hanging",
            "ondine_builtin",
            "app_meter",
            "otel_observer",
            "zero_code",
        },
        "latency_4k": {"bare", "bare_2", "ours", "ours_no_chat_spans", "ondine_builtin"},
        "litellm": {"bare", "bare_2", "ours", "ondine_builtin", "openinference", "openllmetry"},
    }
    for name, names in expected.items():
        found = scenarios[name]["variants"]
        assert set(found) == names, name
        # The same cost from every run: telemetry never changes what ondine computes.
        assert len({r["cost_usd"] for r in found.values()}) == 1, name
        for variant, r in found.items():
            assert r["runs"] == 1 and r["median_s"] > 0, (name, variant)
            assert r["peak_tracemalloc_bytes"] > 0, (name, variant)
            assert r["time_ratio"] is not None, (name, variant)
        assert found["bare"]["time_ratio"] == 1.0
        assert scenarios[name]["noise"]["time_ratio"] == found["bare_2"]["time_ratio"]
        assert found["ours"]["within_target"] in (True, False)
        assert found["ours"]["scrape_failures"] == 0
        assert scenarios[name]["round_gc_phases"] == [0.5], name  # one round: mid-cycle
    instant = scenarios["instant_10k"]["variants"]
    assert instant["ours_otlp_hanging"]["hanging_connections"][0] >= 1
    for name in ("app_meter", "otel_observer", "zero_code"):
        assert instant[name]["target"] == "≤ 1.03× bare", name
    peers = scenarios["litellm"]["variants"]
    assert peers["openinference"]["uninstrumented_cleanly"] is True
    assert peers["openllmetry"]["uninstrumented_cleanly"] is True


def test_exports_reach_the_sink(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    instant = doc["scenarios"]["instant_10k"]["variants"]
    for variant in ("ours", "ours_no_chat_spans", "ondine_builtin"):
        assert instant[variant]["exported_per_run"][0]["traces"][0] >= 1, variant
    assert instant["ours"]["exported_per_run"][0]["metrics"][0] >= 1
    assert instant["bare"]["exported_per_run"][0] == {"traces": [0, 0], "metrics": [0, 0]}
    assert instant["ours_otlp_refused"]["exported_per_run"][0]["traces"] == [0, 0]

    coverage = doc["scenarios"]["coverage"]["variants"]
    rows = coverage["ours"]["rows"]
    # One chat span per call within the first-N policy, none with chat spans off.
    assert coverage["ours"]["spans"] >= coverage["ours_no_chat_spans"]["spans"] + rows
    assert coverage["ours"]["cost_metric"] is True
    for peer in ("openinference", "openllmetry"):
        assert coverage[peer]["spans"] >= rows, peer
        assert coverage[peer]["cost_metric"] is False, peer
    assert coverage["openllmetry"]["metrics"]
    assert coverage["openinference"]["metrics"] == []


def test_entries_on_the_applications_providers(
    quick_run: tuple[dict[str, Any], str, str],
) -> None:
    doc, _, _ = quick_run
    instant = doc["scenarios"]["instant_10k"]["variants"]
    for name in ("app_meter", "otel_observer"):
        evidence = instant[name]["evidence_per_run"][0]
        # Spans in the application's in-memory exporter (run, stages, the first chat spans)
        # and ondine series on its own Prometheus registry, scraped while the job ran.
        assert evidence["spans"] > 3 and evidence["series"] > 0, name
        assert instant[name]["scrape_failures"] == 0, name
        assert instant[name]["exported_per_run"][0]["traces"] == [0, 0], name
        # The bare runs after them are bare: ondine holds its own functions again.
        assert instant[name]["uninstrumented_cleanly"] is True, name
    assert instant["app_meter"]["left_patched"] == []
    assert instant["zero_code"]["left_patched"] == []
    # Zero-code: the distro's SDK exported traces and metrics to the sink over OTLP/HTTP.
    zero = instant["zero_code"]["exported_per_run"][0]
    assert zero["traces"][0] >= 1 and zero["metrics"][0] >= 1


def test_dead_collectors_with_every_protocol(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    dead = doc["scenarios"]["dead_collector_3k"]
    found = dead["variants"]
    names = {
        f"dead_{p}_{k}" for p in ("http", "grpc") for k in ("refused", "hanging", "unavailable")
    }
    assert set(found) == {"bare", "bare_2", "ours", *names}
    assert len({r["cost_usd"] for r in found.values()}) == 1
    assert found["ours"]["exported_per_run"][0]["traces"][0] >= 1
    for name in names:
        r = found[name]
        assert r["exported_per_run"][0]["traces"] == [0, 0], name  # nothing reached the sink
        assert r["shutdown_timeout_s"] == overhead.QUICK.failure_shutdown_timeout, name
        assert r["shutdown_within_timeout"] in (True, False), name
        assert r["within_target"] in (True, False), name
        assert "shutdown ≤ its timeout" in r["target"], name
        if name.endswith("hanging"):
            assert r["hanging_connections"][0] >= 1, name
        if name.endswith("unavailable"):  # the exporter reached the collector and was told 503
            assert r["evidence_per_run"][0]["requests"] >= 1, name
    assert dead["noise"]["time_ratio"] == found["bare_2"]["time_ratio"]


def test_streamed_run(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    stream = doc["scenarios"]["stream_100k"]
    assert stream["config"]["rows"] == overhead.QUICK.stream_rows
    assert stream["config"]["double_rows"] == overhead.QUICK.stream_rows * 2
    assert "execute_stream()" in stream["workload"]
    found = stream["variants"]
    assert set(found) == {"bare", "bare_2", "ours"}
    assert len({r["cost_usd"] for r in found.values()}) == 1
    assert set(stream["at_double"]) == {"bare", "ours"}
    for name in ("bare", "ours"):
        growth = stream["growth"][name]
        assert growth["rss_delta_smaller_bytes"] is not None, name
        assert growth["rss_delta_larger_bytes"] is not None, name
        assert growth["blocks_growth"] is not None, name
    assert stream["growth"]["ours_over_bare_bytes"] is not None
    # Counted in allocations, unlike RSS: one object kept per streamed row would add the
    # row count.
    extra_rows = overhead.QUICK.stream_rows
    assert abs(stream["growth"]["ours_over_bare_blocks"]) < extra_rows / 2, stream["growth"]
    assert found["ours"]["within_target"] in (True, False)


def test_only_runs_a_subset(capsys: pytest.CaptureFixture[str]) -> None:
    chosen = overhead._ROUNDS["instant_10k"].variants(overhead.QUICK)
    ctx = overhead.Context(overhead.QUICK, None, frozenset({"app_meter", "zero_code"}))
    assert [x.name for x in ctx.keep("instant_10k", chosen)] == [
        "bare",
        "bare_2",
        "app_meter",
        "zero_code",
    ]
    whole = overhead.Context(overhead.QUICK, None, frozenset({"instant_10k"}))
    assert whole.keep("instant_10k", chosen) == tuple(chosen)
    assert overhead._has_variant("instant_10k", frozenset({"zero_code"}), overhead.QUICK)
    assert not overhead._has_variant("latency_4k", frozenset({"zero_code"}), overhead.QUICK)
    with pytest.raises(SystemExit):
        overhead.main(["--only", "app_meter,no_such_variant", "--no-write"])
    assert "no_such_variant" in capsys.readouterr().err


def test_memory_shutdown_and_scrape(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, _, _ = quick_run
    memory = doc["scenarios"]["memory_100k"]["variants"]
    for variant in ("bare", "ours"):
        assert memory[variant]["rss_delta_bytes"] is not None, variant
    assert memory["ours"]["within_target"] in (True, False)

    down = doc["scenarios"]["shutdown"]["variants"]
    assert set(down) == {"ours_shutdown", "ours_otlp_hanging_shutdown"}
    assert all(r["timeout_s"] == 0.5 for r in down.values())
    assert all(r["within_timeout"] in (True, False) for r in down.values())

    active = doc["scenarios"]["scrape"]["active_runs"]
    assert list(active) == [str(n) for n in overhead.QUICK.scrape_runs]
    for n, r in active.items():
        assert r["run_ids_on_page"] == int(n) and r["median_ms"] > 0


def test_results_md_has_a_table_per_scenario(quick_run: tuple[dict[str, Any], str, str]) -> None:
    doc, text, stdout = quick_run
    assert "quick mode" in text
    for name in doc["scenarios"]:
        assert f"## {name}" in text, name
    assert "| ours_otlp_hanging |" in text and "| openllmetry |" in text
    for name in ("app_meter", "otel_observer", "zero_code", "dead_grpc_hanging"):
        assert f"| {name} |" in text, name
    assert "ours' growth over bare's" in text
    assert "Noise: bare_2 / bare" in text
    assert "wrote " in stdout


def test_round_orders_differ_and_repeat() -> None:
    chosen = [variants.BARE, variants.BARE_2, variants.OURS]
    orders = runner.round_orders(chosen, 6, "x")
    assert all(sorted(v.name for v in o) == ["bare", "bare_2", "ours"] for o in orders)
    assert all(a != b for a, b in itertools.pairwise(orders))
    assert orders == runner.round_orders(chosen, 6, "x")


def test_the_medians_interval_is_the_binomial_order_statistics() -> None:
    # n = 10: P(X <= 1) = 11/1024 <= 2.5 % < P(X <= 2) = 56/1024, so the 2nd smallest and 2nd
    # largest; n = 20: P(X <= 5) = 2.07 % (the 6th); n = 5 is too few for 95 %.
    ten = [1.0 + i / 100 for i in (3, 9, 0, 5, 7, 1, 8, 2, 6, 4)]
    assert stats.median_interval(ten) == (1.01, 1.08)
    twenty = [float(i) for i in range(20, 0, -1)]
    assert stats.median_interval(twenty) == (6.0, 15.0)
    assert stats.median_interval([1.0] * 5) is None
    # Its coverage, drawn: the interval holds the true median at least 95 % of the time.
    draw = random.Random(7)
    held = 0
    for _ in range(2000):
        found = stats.median_interval([draw.gauss(1.03, 0.04) for _ in range(12)])
        assert found is not None
        held += found[0] <= 1.03 <= found[1]
    assert held / 2000 >= 0.95


def test_round_phases_cover_the_collectors_cycle_and_repeat() -> None:
    phases = runner.round_phases(4, "x")
    assert sorted(phases) == [0.125, 0.375, 0.625, 0.875]
    assert phases == runner.round_phases(4, "x")


def _full_collections(phase: float, share: float) -> int:
    """Full collections while objects worth `share` of the oldest generation's threshold are
    promoted into it, the cycle started at `phase` (the younger generations collected every 50
    allocations, so promotion follows allocation closely)."""
    gc.collect()
    threshold = len(gc.get_objects(generation=2)) / 4
    gctime.start_cycle_at(phase)
    before = gc.get_threshold()
    clock = gctime.GcClock()
    kept: list[list[None]] = []
    try:
        gc.set_threshold(50, 0, 0)
        clock.start()
        kept = [[] for _ in range(int(share * threshold))]
        return clock.full
    finally:
        clock.stop()
        gc.set_threshold(*before)
        kept.clear()


@pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="3.14's incremental collector has no such cycle"
)
def test_a_run_can_start_part_way_through_the_collectors_cycle() -> None:
    """The same promotions bring a full collection only when the cycle starts part way, and
    the shift leaves nothing alive."""
    assert _full_collections(0.0, 0.8) == 0
    assert _full_collections(0.5, 0.8) == 1
    gc.collect()
    alive = len(gc.get_objects())
    gctime.start_cycle_at(0.7)  # ~0.17 of the oldest generation in lists, all freed again
    assert len(gc.get_objects()) <= alive + 0.01 * alive


def test_failure_endpoints_behave_as_named() -> None:
    with pytest.raises(urllib.error.URLError):
        scrape(refused_endpoint())
    hanging = HangingEndpoint()
    port = int(hanging.endpoint.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn, pytest.raises(TimeoutError):
            conn.settimeout(0.2)
            conn.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            conn.recv(1)
    finally:
        hanging.close()
    sink = OtlpSink()
    try:
        request = urllib.request.Request(f"{sink.endpoint}/v1/traces", data=b"abc", method="POST")
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200
        assert sink.totals()["traces"] == (1, 3)
    finally:
        sink.close()


def test_the_sink_and_the_scraper_work_outside_the_measured_process() -> None:
    """A collector and Prometheus are other processes: the bench's must not run here."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    Counter("bench_probe", "a series to scrape", registry=registry).inc()
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    threads_before = {thread.name for thread in threading.enumerate()}
    sink = RemoteSink()
    scraper = RemoteScraper(server.server_address[1], 0.05)
    hanging = RemoteHanging()
    try:
        assert bench_peer().pid != os.getpid()
        request = urllib.request.Request(f"{sink.endpoint}/v1/metrics", data=b"xy", method="POST")
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200
        assert sink.totals()["metrics"] == (1, 2)
        sink.keep_bodies = True
        with urllib.request.urlopen(request, timeout=5):
            pass
        assert sink.take_bodies()["metrics"] == [b"xy"]
        scraper.start()
        deadline = time.monotonic() + 10
        while scraper.scrapes < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert scraper.scrapes >= 3 and scraper.failures == 0
        scraper.stop()  # released in the peer; its counts stay readable here
        assert not scraper.is_alive() and scraper.scrapes >= 3 and scraper.failures == 0
        # Neither runs a thread here: their work is the peer's.
        assert {thread.name for thread in threading.enumerate()} <= threads_before
        port = int(hanging.endpoint.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as conn, pytest.raises(TimeoutError):
            conn.settimeout(0.2)
            conn.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            conn.recv(1)
        assert hanging.connections == 1
        with pytest.raises(RuntimeError, match="benchmark peer"):
            bench_peer().request("open", "no such kind", ())
    finally:
        # Each closed in the peer (a scraper stopped there if it runs), whatever failed above.
        for remote in (hanging, scraper, sink):
            remote.close()
        server.shutdown()
        server.server_close()


def test_a_dead_peer_fails_the_benchmark_loudly_instead_of_hanging_it() -> None:
    lone = Peer()
    try:
        os.kill(lone.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="benchmark peer"):
            lone.request("open", "sink", (200,))
        with pytest.raises(RuntimeError, match="broken"):
            lone.request("open", "sink", (200,))
    finally:
        lone.close()


def test_instrument_adds_under_two_percent_of_a_rows_bytecodes() -> None:
    """The per-row cost as a count, which timing noise cannot blur: a fresh interpreter runs
    instant rows bare and under `instrument()` with an opcode tracer (`benchmarks.bytecodes`).
    Today 84 of 5,554; a per-call SDK record or a second wrapper would break the bound."""
    stdout = _bench("bytecodes", "--rows", "200", "--json", timeout=300)
    counts = json.loads(stdout.strip().splitlines()[-1])
    assert counts["bare"] > 1000  # ondine's own row really ran under the tracer
    assert counts["ours_own"] > 0  # and the wrapper recorded each call
    assert counts["ours_own"] <= 0.02 * counts["bare"], counts
    assert counts["ours"] - counts["bare"] <= 0.03 * counts["bare"], counts
