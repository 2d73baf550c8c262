"""What telemetry costs an ondine job: ours against bare, ondine's own observer and the peers.

``python -m benchmarks.overhead`` (``make bench``) runs every scenario and rewrites
``benchmarks/RESULTS.md`` and ``benchmarks/results/latest.json``; ``--quick`` runs tiny sizes
(the smoke test in ``make test``); ``--only app_meter,zero_code`` runs only those variants
(with the bare runs) or scenarios; ``--help`` lists the rest. Method and targets:
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
from benchmarks.peer import RemoteSink
from benchmarks.runner import Sample
from benchmarks.session import default_shutdown_timeout
from benchmarks.targets import RSS_OVER_BARE_MB, SCRAPE_100_RUNS_MS, STREAM_GROWTH_MB, Target
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
    dead_rows: int = 3_000
    stream_rows: int = 100_000  # and twice it, for the growth in rows
    stream_chunk: int = 10_000  # ondine's default chunk size
    warmup: int = 1
    rounds: int = 6
    # The figure closest to its target: more rounds make its median steadier (the runs are
    # short, so ten rounds of every variant take under four minutes).
    instant_rounds: int = 10
    litellm_rounds: int = 14  # the noisiest scenario: 6 rounds could not order the variants
    memory_rounds: int = 1  # tracemalloc rounds of the in-process scenarios
    rss_rounds: int = 3
    shutdown_rounds: int = 3
    dead_rounds: int = 6
    stream_rounds: int = 3
    shutdown_timeout: float | None = None  # None: shutdown()'s own default
    # The dead-collector scenario keeps every timeout at its default, as a user gets them
    # (each of its runs then takes ~12 s with the shutdown and the exporters' retries).
    dead_default_timeouts: bool = True
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
    dead_rows=30,
    stream_rows=400,
    stream_chunk=100,
    warmup=0,
    rounds=1,
    instant_rounds=1,
    litellm_rounds=1,
    memory_rounds=1,
    rss_rounds=1,
    shutdown_rounds=1,
    dead_rounds=1,
    stream_rounds=1,
    shutdown_timeout=0.5,
    dead_default_timeouts=False,
    failure_shutdown_timeout=0.3,
    failure_otlp_timeout_ms=300,
    scrape_runs=(1, 2, 4),
    scrapes=3,
)


@dataclass
class Context:
    sizes: Sizes
    sink: Any
    only: frozenset[str] = frozenset()  # --only: scenario and variant names; empty: all

    def keep(self, scenario: str, chosen: Sequence[Variant]) -> tuple[Variant, ...]:
        """The variants of `scenario` to run: all, or the bare runs and those --only names."""
        if not self.only or scenario in self.only:
            return tuple(chosen)
        return tuple(x for x in chosen if x.kind == "bare" or x.name in self.only)

    def progress(self, line: str) -> None:
        print(line, flush=True)


def run(names: Sequence[str], sizes: Sizes, only: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every chosen scenario in this process (children for the RSS ones); the results doc.

    `only`: scenarios to run whole and variants to keep (besides the bare runs) in the
    scenarios that have them; empty: everything.
    """
    load_at_start = _load()
    dropped = isolation.prepare_process()
    install_tracer_switch()
    sink = RemoteSink()
    ctx = Context(sizes, sink, only)
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
        "only": sorted(only),
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
        if f.name.endswith(("_rows", "_chunk")) and scale != 1.0
    }
    if rounds is not None:
        changes.update(
            rounds=rounds,
            instant_rounds=rounds,
            litellm_rounds=rounds,
            rss_rounds=rounds,
            dead_rounds=rounds,
            stream_rounds=rounds,
        )
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
    rounds: Callable[[Sizes], int] = lambda s: s.rounds
    memory_rounds: Callable[[Sizes], int] = lambda s: s.memory_rounds


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
            v.APP_METER,
            v.OTEL_OBSERVER,
            v.ZERO_CODE,
        ),
        {
            "ours": Target(1.03, ("ondine_builtin",)),
            "ours_no_chat_spans": Target(1.03),
            "ours_otlp_refused": Target(1.05),
            "ours_otlp_hanging": Target(1.05),
            "app_meter": Target(1.03),
            "otel_observer": Target(1.03),
            "zero_code": Target(1.03),
        },
        "the worst case for relative cost: ondine's own per-row work is all there is",
        rounds=lambda s: s.instant_rounds,
    ),
    "dead_collector_3k": RoundsPlan(
        lambda s: Workload("offline", s.dead_rows),
        lambda s: (
            v.BARE,
            v.BARE_2,
            v.OURS,
            *(
                x if s.dead_default_timeouts else _failing(x, s, s.failure_shutdown_timeout)
                for x in v.DEAD
            ),
        ),
        {x.name: Target(1.05, shutdown=True) for x in v.DEAD},
        "under instrument() with every timeout at its default (OTLP 10 s, shutdown() "
        f"{default_shutdown_timeout():g} s): refused, hanging and 503/UNAVAILABLE collectors "
        "over both protocols; ours with the live sink for reference",
        rounds=lambda s: s.dead_rounds,
        memory_rounds=lambda s: 0,  # what a failing exporter allocates is not the question
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
        rounds=lambda s: s.litellm_rounds,  # the noisiest scenario: more rounds
    ),
}


def _rounds_scenario(ctx: Context, label: str) -> dict[str, Any]:
    plan, s = _ROUNDS[label], ctx.sizes
    workload, chosen = plan.workload(s), ctx.keep(label, plan.variants(s))
    rounds = plan.rounds(s)
    found = runner.interleaved(
        chosen,
        workload,
        ctx.sink,
        warmup=s.warmup,
        rounds=rounds,
        memory_rounds=plan.memory_rounds(s),
        label=label,
        progress=ctx.progress,
    )
    summaries = stats.summarize(
        found.timed, found.traced, workload.rows, {x.name: x.description for x in chosen}
    )
    for name, target in plan.targets.items():
        if name not in summaries:
            continue
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
            "tracemalloc_rounds": plan.memory_rounds(s),
        },
        "round_orders": found.orders,
        "round_gc_phases": found.phases,
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


def _stream(ctx: Context) -> dict[str, Any]:
    """execute_stream() over many rows, bare and ours, each run a fresh process: wall ratio,
    peak RSS, and how the RSS delta grows from those rows to twice as many (past the first
    chunks, where the allocator still grows for bare and ours alike)."""
    s = ctx.sizes
    full, double = s.stream_rows, 2 * s.stream_rows
    label = f"stream_{full // 1000}k" if full >= 1000 else "stream"
    timed: dict[int, dict[str, list[Sample]]] = {}
    orders: dict[int, list[list[str]]] = {}
    for rows, chosen in ((full, (v.BARE, v.BARE_2, v.OURS)), (double, (v.BARE, v.OURS))):
        raw, orders[rows] = memory.measure_children(
            chosen,
            rows,
            rounds=s.stream_rounds,
            label=f"{label} {rows:,}",
            progress=ctx.progress,
            stream_chunk=s.stream_chunk,
        )
        timed[rows] = {name: [Sample(**doc) for doc in docs] for name, docs in raw.items()}
    descriptions = {x.name: x.description for x in (v.BARE, v.BARE_2, v.OURS)}
    summaries = stats.summarize(timed[full], {}, full, descriptions)
    at_double = stats.summarize(timed[double], {}, double, descriptions)
    growth = {
        name: stats.growth(summaries[name], at_double[name]) for name in (v.BARE.name, v.OURS.name)
    }
    ours, bare = growth[v.OURS.name], growth[v.BARE.name]
    extra = (
        None
        if ours["growth_bytes"] is None or bare["growth_bytes"] is None
        else (ours["growth_bytes"] - bare["growth_bytes"])
    )
    extra_blocks = (
        None
        if ours["blocks_growth"] is None or bare["blocks_growth"] is None
        else ours["blocks_growth"] - bare["blocks_growth"]
    )
    r = summaries[v.OURS.name]
    over = r["rss_over_bare_bytes"]
    r["target"] = (
        f"≤ 1.03× bare, peak RSS ≤ bare + {RSS_OVER_BARE_MB:g} MB, growth {full:,} → {double:,} "
        f"rows ≤ bare's + {STREAM_GROWTH_MB:g} MB"
    )
    checks = [
        None if r["time_ratio"] is None else r["time_ratio"] <= 1.03,
        None if over is None else over <= RSS_OVER_BARE_MB * 1e6,
        None if extra is None else extra <= STREAM_GROWTH_MB * 1e6,
    ]
    r["within_target"] = None if None in checks else all(checks)
    return {
        "kind": "stream",
        "workload": Workload("offline", full, stream_chunk=s.stream_chunk).describe()
        + ", one fresh process a run",
        "note": "RSS delta = the highest RSS while the stream ran (10 ms sampler) minus RSS "
        f"right before it; growth = RSS delta at {double:,} rows minus at {full:,}; blocks kept "
        "= live memory blocks after the run (pipeline dropped, exports flushed, a full "
        "collection) minus before the run (pipeline built); they count allocations, not bytes",
        "config": {
            "rows": full,
            "double_rows": double,
            "chunk_rows": s.stream_chunk,
            "rounds": s.stream_rounds,
        },
        "round_orders": {str(rows): found for rows, found in orders.items()},
        "noise": stats.noise(summaries),
        "variants": summaries,
        "at_double": at_double,
        "growth": {**growth, "ours_over_bare_bytes": extra, "ours_over_bare_blocks": extra_blocks},
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
    "stream_100k": _stream,
    "shutdown": _shutdown,
    "scrape": _scrape,
    "coverage": _coverage,
}


def _has_variant(scenario: str, names: frozenset[str], sizes: Sizes) -> bool:
    """`scenario` runs one of the named variants (only interleaved rounds are split up)."""
    plan = _ROUNDS.get(scenario)
    return plan is not None and any(x.name in names for x in plan.variants(sizes))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=(*_SCENARIOS, "all"),
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated scenario and variant names: run those scenarios whole and, in "
        "the others that have them, only those variants besides the bare runs "
        "(e.g. app_meter,zero_code or dead_collector_3k,stream_100k)",
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
    only = frozenset(n.strip() for n in (args.only or "").split(",") if n.strip())
    if only:
        unknown = only - set(_SCENARIOS) - set(v.BY_NAME)
        if unknown:
            parser.error(
                f"--only: unknown {', '.join(sorted(unknown))}; scenarios: "
                f"{', '.join(_SCENARIOS)}; variants: {', '.join(v.BY_NAME)}"
            )
        names = [n for n in names if n in only or _has_variant(n, only, sizes)]
    doc = run(names, sizes, only)

    text = report.render(doc)
    print()
    print(text)
    if not args.no_write:
        for path in report.write(doc, text, args.output_dir):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
