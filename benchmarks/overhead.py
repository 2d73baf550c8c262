"""What telemetry costs an ondine job: ours against bare, ondine's own observer and the peers.

``python -m benchmarks.overhead`` (``make bench``) runs every scenario and rewrites
``benchmarks/RESULTS.md`` and ``benchmarks/results/latest.json``; ``--quick`` runs tiny sizes
(the smoke test in ``make test``); ``--help`` lists the rest. Method and targets:
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks import coverage, isolation, memory, report, runner, scrape, shutdown, stats
from benchmarks import variants as v
from benchmarks.endpoints import OtlpSink
from benchmarks.runner import Sample
from benchmarks.targets import RSS_OVER_BARE_MB, SCRAPE_100_RUNS_MS, Target
from benchmarks.variants import Variant, install_tracer_switch
from benchmarks.workload import Workload

HERE = Path(__file__).resolve().parent
PACKAGES = (
    "ondine",
    "ondine-otel",
    "litellm",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "prometheus-client",
    "openinference-instrumentation-litellm",
    "opentelemetry-instrumentation-litellm",
)


@dataclass(frozen=True)
class Sizes:
    """Rows and rounds; `--quick` swaps in tiny ones (same code paths)."""

    instant_rows: int = 10_000
    latency_rows: int = 4_000
    litellm_rows: int = 600
    memory_rows: int = 100_000
    shutdown_rows: int = 2_000
    coverage_rows: int = 150
    warmup: int = 1
    rounds: int = 6
    litellm_rounds: int = 14  # the noisiest scenario: 6 rounds could not order the variants
    memory_rounds: int = 1  # tracemalloc rounds of the in-process scenarios
    rss_rounds: int = 3
    shutdown_rounds: int = 3
    shutdown_timeout: float | None = None  # None: shutdown()'s own default
    # In the rounds, the OTLP-failure variants shut down with this timeout and export with
    # this OTLP timeout, so their retries end soon after the run (the shutdown scenario
    # keeps both defaults). A shorter OTLP timeout only means more export attempts.
    failure_shutdown_timeout: float = 2.0
    failure_otlp_timeout_ms: int = 2000
    scrape_runs: tuple[int, ...] = (1, 10, 100)
    scrapes: int = 20


QUICK = Sizes(
    instant_rows=40,
    latency_rows=16,
    litellm_rows=6,
    memory_rows=300,
    shutdown_rows=20,
    coverage_rows=6,
    warmup=0,
    rounds=1,
    litellm_rounds=1,
    memory_rounds=1,
    rss_rounds=1,
    shutdown_rounds=1,
    shutdown_timeout=0.5,
    failure_shutdown_timeout=0.3,
    failure_otlp_timeout_ms=300,
    scrape_runs=(1, 2, 4),
    scrapes=3,
)


@dataclass
class Context:
    sizes: Sizes
    sink: Any

    def progress(self, line: str) -> None:
        print(line, flush=True)


def run(names: Sequence[str], sizes: Sizes) -> dict[str, Any]:
    """Every chosen scenario in this process (children for the RSS one); the results doc."""
    load_at_start = _load()
    dropped = isolation.prepare_process()
    install_tracer_switch()
    sink = OtlpSink()
    ctx = Context(sizes, sink)
    started = time.perf_counter()
    scenarios: dict[str, Any] = {}
    try:
        for name in names:
            print(f"== {name}", flush=True)
            began = time.perf_counter()
            scenarios[name] = _SCENARIOS[name](ctx)
            scenarios[name]["duration_s"] = round(time.perf_counter() - began, 1)
    finally:
        sink.close()
    return {
        "benchmark": "benchmarks.overhead",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 1),
        "quick": sizes.instant_rows < Sizes().instant_rows,
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            # Above the CPU count, other work shared the machine: the ratios are noise.
            "load_average_1min": {"start": load_at_start, "end": _load()},
        },
        "versions": {name: _version(name) for name in PACKAGES},
        "environment_dropped": dropped,
        "scenarios": scenarios,
    }


def _adjusted(sizes: Sizes, scale: float, rounds: int | None) -> Sizes:
    """`sizes` with every row count scaled and the timed rounds replaced, if asked."""
    changes: dict[str, Any] = {
        f.name: max(1, round(getattr(sizes, f.name) * scale))
        for f in dataclasses.fields(sizes)
        if f.name.endswith("_rows") and scale != 1.0
    }
    if rounds is not None:
        changes.update(rounds=rounds, litellm_rounds=rounds, rss_rounds=rounds)
    return dataclasses.replace(sizes, **changes)


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _failing(variant: Variant, sizes: Sizes, shutdown_timeout: float | None) -> Variant:
    """An OTLP-failure variant with the given shutdown timeout and the rounds' OTLP timeout."""
    settings = {**variant.settings, "otlp_timeout": sizes.failure_otlp_timeout_ms}
    return dataclasses.replace(variant, settings=settings, shutdown_timeout=shutdown_timeout)


@dataclass(frozen=True)
class RoundsPlan:
    """A scenario of interleaved in-process rounds: the work, the variants, the targets."""

    workload: Callable[[Sizes], Workload]
    variants: Callable[[Sizes], tuple[Variant, ...]]
    targets: dict[str, Target]
    note: str
    litellm: bool = False  # its own round count (litellm's calls are slow)


_ROUNDS = {
    "instant_10k": RoundsPlan(
        lambda s: Workload("offline", s.instant_rows),
        lambda s: (
            v.BARE,
            v.BARE_2,
            v.OURS,
            v.OURS_NO_CHAT,
            _failing(v.OURS_REFUSED, s, s.failure_shutdown_timeout),
            _failing(v.OURS_HANGING, s, s.failure_shutdown_timeout),
            v.ONDINE_BUILTIN,
        ),
        {
            "ours": Target(1.03, ("ondine_builtin",)),
            "ours_no_chat_spans": Target(1.03),
            "ours_otlp_refused": Target(1.05),
            "ours_otlp_hanging": Target(1.05),
        },
        "the worst case for relative cost: ondine's own per-row work is all there is",
    ),
    "latency_4k": RoundsPlan(
        lambda s: Workload("offline", s.latency_rows, latency_s=0.005, latency_jitter=0.9),
        lambda s: (v.BARE, v.BARE_2, v.OURS, v.OURS_NO_CHAT, v.ONDINE_BUILTIN),
        {"ours": Target(1.01, ("ondine_builtin",)), "ours_no_chat_spans": Target(1.01)},
        "calls that wait (5 ms on average, still far faster than real providers)",
    ),
    "litellm": RoundsPlan(
        lambda s: Workload("litellm", s.litellm_rows),
        lambda s: (v.BARE, v.BARE_2, v.OURS, v.ONDINE_BUILTIN, v.OPENINFERENCE, v.OPENLLMETRY),
        {"ours": Target(None, ("ondine_builtin", "openinference", "openllmetry"))},
        "the real LiteLLM client offline (mock_response); the peers are applied before and "
        "removed after each of their runs, litellm checked to hold its own functions again",
        litellm=True,
    ),
}


def _rounds_scenario(ctx: Context, label: str) -> dict[str, Any]:
    plan, s = _ROUNDS[label], ctx.sizes
    workload, chosen = plan.workload(s), plan.variants(s)
    rounds = s.litellm_rounds if plan.litellm else s.rounds
    found = runner.interleaved(
        chosen,
        workload,
        ctx.sink,
        warmup=s.warmup,
        rounds=rounds,
        memory_rounds=s.memory_rounds,
        label=label,
        progress=ctx.progress,
    )
    summaries = stats.summarize(
        found.timed, found.traced, workload.rows, {x.name: x.description for x in chosen}
    )
    for name, target in plan.targets.items():
        summaries[name]["target"] = target.describe()
        summaries[name]["within_target"] = target.met(name, summaries)
    return {
        "kind": "rounds",
        "workload": workload.describe(),
        "note": plan.note,
        "config": {
            "rows": workload.rows,
            "latency_s": workload.latency_s,
            "latency_jitter": workload.latency_jitter,
            "client": workload.client,
            "warmup_rounds": s.warmup,
            "timed_rounds": rounds,
            "tracemalloc_rounds": s.memory_rounds,
        },
        "round_orders": found.orders,
        "noise": stats.noise(summaries),
        "variants": summaries,
    }


def _memory(ctx: Context) -> dict[str, Any]:
    rows = ctx.sizes.memory_rows
    chosen = (v.BARE, v.OURS)
    raw, orders = memory.measure_children(
        chosen, rows, rounds=ctx.sizes.rss_rounds, label="memory_100k", progress=ctx.progress
    )
    timed = {name: [Sample(**doc) for doc in docs] for name, docs in raw.items()}
    summaries = stats.summarize(timed, {}, rows, {x.name: x.description for x in chosen})
    over = summaries["ours"]["rss_over_bare_bytes"]
    summaries["ours"]["target"] = f"peak RSS ≤ bare + {RSS_OVER_BARE_MB:g} MB"
    summaries["ours"]["within_target"] = None if over is None else over <= RSS_OVER_BARE_MB * 1e6
    return {
        "kind": "rss",
        "workload": f"{rows:,} rows, offline client answering at once, one fresh process a run",
        "note": "RSS delta = the highest RSS during execute() (10 ms sampler) minus RSS "
        "right before it",
        "config": {"rows": rows, "rounds": ctx.sizes.rss_rounds},
        "round_orders": orders,
        "variants": summaries,
    }


def _shutdown(ctx: Context) -> dict[str, Any]:
    chosen = shutdown.variants(ctx.sizes.shutdown_timeout)
    if ctx.sizes.shutdown_timeout is not None:  # quick: short timeouts all round
        chosen = [
            _failing(x, ctx.sizes, x.shutdown_timeout) if x.otlp != "sink" else x for x in chosen
        ]
    found = shutdown.measure(
        chosen,
        Workload("offline", ctx.sizes.shutdown_rows),
        ctx.sink,
        rounds=ctx.sizes.shutdown_rounds,
        progress=ctx.progress,
    )
    out: dict[str, Any] = {}
    for variant in chosen:
        runs = found[variant.name]
        times = sorted(s.teardown_s for s in runs)
        out[variant.name] = {
            "description": variant.description,
            "shutdown_s": [round(t, 3) for t in times],
            "median_s": round(times[len(times) // 2], 3),
            "max_s": round(times[-1], 3),
            "timeout_s": runs[0].shutdown_timeout,
            "threads_alive_after_s": round(max(s.linger_s for s in runs), 3),
            "threads_alive_at_deadline": max(s.lingering_threads for s in runs),
            "within_timeout": all(shutdown.within(s) for s in runs),
            "cost_usd": runs[0].cost,
        }
    return {
        "kind": "shutdown",
        "workload": f"{ctx.sizes.shutdown_rows:,} rows, offline client answering at once, "
        "then shutdown() timed",
        "note": f"within: shutdown() returned within its timeout (+{shutdown.SLACK:.0%})",
        "variants": out,
    }


def _scrape(ctx: Context) -> dict[str, Any]:
    found = scrape.measure(
        ctx.sizes.scrape_runs, ctx.sink, scrapes=ctx.sizes.scrapes, progress=ctx.progress
    )
    for n, entry in found.items():
        entry["within_target"] = (
            entry["median_ms"] <= SCRAPE_100_RUNS_MS if int(n) == scrape.TARGET_RUNS else None
        )
    return {
        "kind": "scrape",
        "workload": "N one-row runs held active inside their LLM call; one full GET of "
        "/metrics, timed, repeated",
        "target": f"median ≤ {SCRAPE_100_RUNS_MS:g} ms with {scrape.TARGET_RUNS} active runs",
        "active_runs": found,
    }


def _coverage(ctx: Context) -> dict[str, Any]:
    workload = Workload("litellm", ctx.sizes.coverage_rows)
    chosen = (v.OURS, v.OURS_NO_CHAT, v.ONDINE_BUILTIN, v.OPENINFERENCE, v.OPENLLMETRY)
    found = coverage.exported(chosen, workload, ctx.sink)
    for name, entry in found.items():
        ctx.progress(
            f"  {'coverage':<16} {name:<20} {entry['spans']:>5} spans, "
            f"{len(entry['metrics'])} metrics, cost metric: {entry['cost_metric']}"
        )
    return {"kind": "coverage", "workload": workload.describe(), "variants": found}


_SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    **{name: functools.partial(_rounds_scenario, label=name) for name in _ROUNDS},
    "memory_100k": _memory,
    "shutdown": _shutdown,
    "scrape": _scrape,
    "coverage": _coverage,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=(*_SCENARIOS, "all"),
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=HERE,
        help="where RESULTS.md and results/latest.json go (default: benchmarks/)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every row count (development)"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per scenario (development)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    names = (
        list(_SCENARIOS)
        if not args.scenario or "all" in args.scenario
        else [n for n in _SCENARIOS if n in args.scenario]
    )
    sizes = _adjusted(QUICK if args.quick else Sizes(), args.scale, args.rounds)
    doc = run(names, sizes)

    text = report.render(doc)
    print()
    print(text)
    if not args.no_write:
        for path in report.write(doc, text, args.output_dir):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
