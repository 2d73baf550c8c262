"""What instrumentation costs a pipeline: wall time and peak memory, bare vs instrumented.

Two scenarios. ``instant``: the LLM client answers at once, so ondine's own per-row work is all
there is to slow down; the worst case for relative overhead. ``latency_5ms``: every call takes
5 ms, still 20-100 times faster than real providers, so relative overhead is already small.
Within a scenario, variants run interleaved in one process after a warm-up, so drift of the
machine (turbo, caches, other load) hits all of them alike; medians resist the odd slow run.
Memory is measured in separate runs because tracemalloc itself slows Python down several times.

Run with ``python -m benchmarks.overhead`` (``make bench``); ``--help`` lists the knobs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ondine.utils import configure_logging
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from ondine_otel.config import TelemetryConfig
from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews
from ondine_otel.export.providers import PrometheusEndpoint, build_meter_provider
from ondine_otel.instrumentor import OndineInstrumentor

RESULTS_FILE = Path(__file__).parent / "results" / "latest.json"
SCRAPE_INTERVAL_S = 0.5
CONCURRENCY = 8


@dataclass(frozen=True)
class Targets:
    """Upper bounds for a variant against bare (see benchmarks/README.md for the reasons)."""

    time_ratio: float
    memory_ratio: float
    per_call_us: float | None = None  # (median variant - median bare) / rows, in µs

    def met(
        self, time_ratio: float | None, memory_ratio: float | None, per_call_us: float | None
    ) -> bool | None:
        if time_ratio is None or memory_ratio is None:
            return None
        within = time_ratio <= self.time_ratio and memory_ratio <= self.memory_ratio
        if self.per_call_us is not None:
            within = within and per_call_us is not None and per_call_us <= self.per_call_us
        return within

    def as_dict(self) -> dict[str, float]:
        found = {"time_ratio": self.time_ratio, "memory_ratio": self.memory_ratio}
        if self.per_call_us is not None:
            found["per_call_us"] = self.per_call_us
        return found

    def describe(self) -> str:
        parts = [f"time ratio <= {self.time_ratio}"]
        if self.per_call_us is not None:
            parts.append(f"<= {self.per_call_us:g} µs/call")
        parts.append(f"memory ratio <= {self.memory_ratio}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    rows: int
    llm_latency_s: float
    targets: Targets
    llm_latency_jitter: float = 0.0
    repeats: int = 5
    memory_repeats: int = 3
    warmup: int = 1


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "instant",
        "client answers at once: ondine's own per-row work only (worst case for overhead)",
        rows=10_000,
        llm_latency_s=0.0,
        targets=Targets(time_ratio=1.50, memory_ratio=1.25, per_call_us=60.0),
    ),
    Scenario(
        "latency_5ms",
        "calls take 0.5-9.5 ms, 5 ms on average (still 20-100x faster than real providers; "
        "spread like real calls, so concurrent calls do not run in lockstep)",
        rows=4_000,
        llm_latency_s=0.005,
        llm_latency_jitter=0.9,
        targets=Targets(time_ratio=1.05, memory_ratio=1.25),
    ),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    instrumented: bool
    llm_span_limit: int = 1000  # the instrumentor's default


VARIANTS: tuple[Variant, ...] = (
    Variant("bare", "no instrumentation", instrumented=False),
    Variant(
        "instrumented",
        "traces (BatchSpanProcessor, dropping exporter, default llm_span_limit=1000) + metrics "
        "(MeterProvider from ondine_otel.export.providers.build_meter_provider with the Prometheus "
        f"reader, /metrics scraped over HTTP every {SCRAPE_INTERVAL_S} s)",
        instrumented=True,
    ),
    Variant(
        "instrumented_no_llm_spans",
        "as instrumented, with llm_span_limit=0 (no per-call chat spans)",
        instrumented=True,
        llm_span_limit=0,
    ),
)


class _DroppingSpanExporter(SpanExporter):
    """Accepts and forgets spans: the SDK's full span path runs, without a backend's cost."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _Scraper(threading.Thread):
    """Scrapes /metrics like Prometheus would, so collection runs while the job does."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(name="bench-scraper", daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.scrapes = 0
        self.failures = 0
        self._done = threading.Event()  # not _stop: Thread has a private method of that name

    def run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    reply.read()
                self.scrapes += 1
            except OSError:
                self.failures += 1

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


@dataclass
class Sample:
    seconds: float
    cost: Decimal
    rows: int
    scrapes: int = 0
    scrape_failures: int = 0
    peak_bytes: int | None = None


@contextmanager
def _instrumentation(variant: Variant) -> Iterator[_Scraper | None]:
    """The variant's providers, endpoint, scraper and instrumentor, all torn down after."""
    if not variant.instrumented:
        yield None
        return
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_DroppingSpanExporter()))
    endpoint = PrometheusEndpoint()
    # As ondine-otel's own set-up builds it (its views, exemplars off). Default settings, not
    # the environment's: ONDINE_OTEL_* variables of the shell must not change the benchmark.
    meter_provider = build_meter_provider(
        TelemetryConfig.from_settings(environ={}), Resource.create({}), [endpoint.reader]
    )
    scraper = _Scraper(endpoint.serve("127.0.0.1", 0), SCRAPE_INTERVAL_S)
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        llm_span_limit=variant.llm_span_limit,
    )
    try:
        yield scraper
    finally:
        scraper.stop()
        instrumentor.uninstrument()
        endpoint.close()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def run_once(
    variant: Variant,
    rows: int,
    *,
    llm_latency_s: float = 0.0,
    llm_latency_jitter: float = 0.0,
    trace_memory: bool = False,
) -> Sample:
    """One execute() of the demo pipeline over ``rows`` rows; only execute() is timed."""
    df = load_reviews(rows)
    with tempfile.TemporaryDirectory(prefix="ondine-otel-bench-") as checkpoint_dir:
        pipeline = build_demo_pipeline(
            df,
            client=OfflineLLMClient(latency_s=llm_latency_s, latency_jitter=llm_latency_jitter),
            concurrency=CONCURRENCY,
            checkpoint_dir=checkpoint_dir,
        )
        with _instrumentation(variant) as scraper:
            gc.collect()
            if scraper is not None:
                scraper.start()
            if trace_memory:
                tracemalloc.start()
            started = time.perf_counter()
            try:
                result = pipeline.execute()
                seconds = time.perf_counter() - started
            finally:
                peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
                if trace_memory:
                    tracemalloc.stop()
    return Sample(
        seconds=seconds,
        cost=Decimal(result.costs.total_cost),
        rows=result.metrics.processed_rows,
        scrapes=scraper.scrapes if scraper is not None else 0,
        scrape_failures=scraper.failures if scraper is not None else 0,
        peak_bytes=peak,
    )


def _rotated(variants: Sequence[Variant], shift: int) -> list[Variant]:
    """Each round starts with a different variant, so none always runs first or last."""
    shift %= len(variants)
    return [*variants[shift:], *variants[:shift]]


def measure(
    scenario: Scenario,
    *,
    rows: int | None = None,
    repeats: int | None = None,
    memory_repeats: int | None = None,
    warmup: int | None = None,
    variants: Sequence[Variant] = VARIANTS,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one scenario's interleaved rounds; the scenario's entry of ``latest.json``.

    ``rows``, ``repeats``, ``memory_repeats`` and ``warmup`` override the scenario's own.
    """
    rows = scenario.rows if rows is None else rows
    repeats = scenario.repeats if repeats is None else repeats
    memory_repeats = scenario.memory_repeats if memory_repeats is None else memory_repeats
    warmup = scenario.warmup if warmup is None else warmup
    timed: dict[str, list[Sample]] = {v.name: [] for v in variants}
    traced: dict[str, list[Sample]] = {v.name: [] for v in variants}
    # (label, where the sample goes (None: discarded), variant, under tracemalloc)
    plan: list[tuple[str, dict[str, list[Sample]] | None, Variant, bool]] = [
        (f"warm-up {i + 1}", None, v, False) for i in range(warmup) for v in variants
    ]
    plan += [
        (f"round {i + 1}/{repeats}", timed, v, False)
        for i in range(repeats)
        for v in _rotated(variants, i)
    ]
    plan += [
        (f"memory {i + 1}/{memory_repeats}", traced, v, True)
        for i in range(memory_repeats)
        for v in _rotated(variants, i)
    ]
    for label, into, variant, trace_memory in plan:
        sample = run_once(
            variant,
            rows,
            llm_latency_s=scenario.llm_latency_s,
            llm_latency_jitter=scenario.llm_latency_jitter,
            trace_memory=trace_memory,
        )
        if into is not None:
            into[variant.name].append(sample)
        if progress:
            mib = f"  peak {sample.peak_bytes / 2**20:.1f} MiB" if sample.peak_bytes else ""
            print(
                f"  {scenario.name:<12} {label:<14} {variant.name:<26} "
                f"{sample.seconds:7.3f} s{mib}",
                flush=True,
            )

    costs = {s.cost for samples in (*timed.values(), *traced.values()) for s in samples}
    if len(costs) > 1:  # instrumentation must never change what ondine computes
        raise RuntimeError(f"{scenario.name}: runs disagree on the cost: {sorted(costs)}")
    baseline = variants[0].name
    base_time = statistics.median(s.seconds for s in timed[baseline]) if repeats else None
    base_peak = _median_peak(traced[baseline])
    results: dict[str, Any] = {}
    for variant in variants:
        times = [s.seconds for s in timed[variant.name]]
        median = statistics.median(times) if times else None
        peak = _median_peak(traced[variant.name])
        time_ratio = median / base_time if median and base_time else None
        memory_ratio = peak / base_peak if peak and base_peak else None
        per_call_us = (
            (median - base_time) / rows * 1e6
            if median is not None and base_time is not None and rows
            else None
        )
        results[variant.name] = {
            "description": variant.description,
            "wall_s": [round(t, 4) for t in times],
            "median_s": _round(median, 4),
            "rows_per_s": _round(rows / median if median else None, 0),
            "time_ratio": _round(time_ratio, 3),
            "per_call_overhead_us": _round(per_call_us, 1),
            "peak_memory_bytes": [s.peak_bytes for s in traced[variant.name]],
            "median_peak_memory_bytes": peak,
            "memory_ratio": _round(memory_ratio, 3),
            "scrapes_per_run": [s.scrapes for s in timed[variant.name]],
            "scrape_failures": sum(s.scrape_failures for s in timed[variant.name]),
            "within_targets": None
            if variant.name == baseline
            else scenario.targets.met(time_ratio, memory_ratio, per_call_us),
        }
    return {
        "description": scenario.description,
        "config": {
            "rows": rows,
            "concurrency": CONCURRENCY,
            "llm_latency_s": scenario.llm_latency_s,
            "llm_latency_jitter": scenario.llm_latency_jitter,
            "warmup_rounds": warmup,
            "timed_rounds": repeats,
            "memory_rounds": memory_repeats,
        },
        "targets": scenario.targets.as_dict(),
        "total_cost_usd": str(costs.pop()) if costs else None,
        "variants": results,
    }


def run_benchmark(
    scenarios: Sequence[Scenario] = SCENARIOS,
    *,
    rows: int | None = None,
    repeats: int | None = None,
    memory_repeats: int | None = None,
    warmup: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every scenario in turn; the results document (see ``latest.json``)."""
    started = time.perf_counter()
    results = {
        s.name: measure(
            s,
            rows=rows,
            repeats=repeats,
            memory_repeats=memory_repeats,
            warmup=warmup,
            progress=progress,
        )
        for s in scenarios
    }
    return {
        "benchmark": "benchmarks.overhead",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "versions": {
            name: version(name)
            for name in ("ondine", "ondine-otel", "opentelemetry-sdk", "prometheus-client")
        },
        "config": {
            "scrape_interval_s": SCRAPE_INTERVAL_S,
            "timed": "Pipeline.execute() only (pipeline build and provider set-up excluded)",
            "memory": "tracemalloc peak of Python allocations during execute(), own runs",
            "per_call_overhead_us": "(median variant - median bare) / rows; one LLM call a row",
        },
        "scenarios": results,
    }


def _median_peak(samples: Sequence[Sample]) -> int | None:
    peaks = [s.peak_bytes for s in samples if s.peak_bytes is not None]
    return int(statistics.median(peaks)) if peaks else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def format_table(doc: dict[str, Any]) -> str:
    """The results as a fixed-width text table (also pasted into the READMEs)."""
    header = (
        f"{'scenario':<12} {'variant':<26} {'median s':>8} {'rows/s':>7} {'time ratio':>10} "
        f"{'µs/call':>7} {'peak MiB':>8} {'mem ratio':>9}  within targets"
    )
    lines = [header, "-" * len(header)]
    for scenario, s in doc["scenarios"].items():
        baseline = next(iter(s["variants"]), None)
        for name, r in s["variants"].items():
            peak = r["median_peak_memory_bytes"]
            ok = r["within_targets"]
            per_call = None if name == baseline else r["per_call_overhead_us"]
            lines.append(
                f"{scenario:<12} {name:<26} {_cell(r['median_s'], '.3f'):>8} "
                f"{_cell(r['rows_per_s'], ',.0f'):>7} {_cell(r['time_ratio'], '.3f'):>10} "
                f"{_cell(per_call, '+.1f'):>7} "
                f"{_cell(peak / 2**20 if peak else None, '.1f'):>8} "
                f"{_cell(r['memory_ratio'], '.3f'):>9}  "
                f"{'-' if ok is None else 'yes' if ok else 'NO'}"
            )
    return "\n".join(lines)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    parser.add_argument(
        "--scenario",
        choices=(*SCENARIO_NAMES, "all"),
        default="all",
        help="which scenario to run (default: all)",
    )
    parser.add_argument(
        "--rows", type=int, help="rows per run, for every scenario run (default: the scenario's)"
    )
    parser.add_argument("--repeats", type=int, help="timed rounds (default: the scenario's)")
    parser.add_argument(
        "--memory-repeats", type=int, help="tracemalloc rounds (default: the scenario's)"
    )
    parser.add_argument("--warmup", type=int, help="untimed rounds (default: the scenario's)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="results JSON")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    scenarios = [s for s in SCENARIOS if args.scenario in ("all", s.name)]

    # ondine logs every row-level hiccup; the benchmark wants its stdout for the table.
    configure_logging(level="ERROR")
    for s in scenarios:
        print(
            f"ondine-otel overhead, {s.name}: {args.rows or s.rows:,} rows, "
            f"LLM latency {s.llm_latency_s * 1000:g} ms, concurrency {CONCURRENCY}, "
            f"{s.repeats if args.repeats is None else args.repeats} timed + "
            f"{s.memory_repeats if args.memory_repeats is None else args.memory_repeats} "
            "memory rounds per variant",
            flush=True,
        )
    doc = run_benchmark(
        scenarios,
        rows=args.rows,
        repeats=args.repeats,
        memory_repeats=args.memory_repeats,
        warmup=args.warmup,
    )
    print()
    print(format_table(doc))
    for s in scenarios:
        print(f"targets, {s.name}: {s.targets.describe()}")
    print(
        f"python {doc['machine']['python']}, {doc['machine']['cpu_count']} CPUs, "
        f"{doc['duration_s']:.0f} s"
    )
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {_display(args.output)}")
    return 0


def _display(path: Path) -> str:
    """The path relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
