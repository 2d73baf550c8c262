"""One timed run, and interleaved rounds of them.

Only ``Pipeline.execute()`` is timed; building the pipeline and setting a variant up or down
are not (tear-down is timed on its own). A full collection runs before every timed run and
the harness keeps nothing of a run but a few numbers, so no run pays for another's garbage.
Rounds are short and each runs every variant once in its own shuffled order (seeded, so a
rerun repeats it): the machine's fast/slow phases then fall on all variants alike. Each round
also starts its runs at its own point of the collector's cycle (the rounds spread evenly over
it), so what a variant keeps alive costs what it typically would, not all or nothing as decided
by where the bare run happens to end.
"""

from __future__ import annotations

import gc
import random
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.gctime import GcClock, start_cycle_at
from benchmarks.peer import RemoteSink
from benchmarks.rss import PeakSampler, rss_bytes
from benchmarks.session import Session
from benchmarks.variants import Variant, session
from benchmarks.workload import Workload, build_pipeline, execute

SEED = 20261201
LINGER_DEADLINE_S = 15.0


@dataclass
class Sample:
    """What one run leaves behind: numbers only."""

    variant: str
    seconds: float
    cost: str
    rows: int
    peak_bytes: int | None = None
    teardown_s: float = 0.0
    shutdown_timeout: float | None = None
    scrapes: int = 0
    scrape_failures: int = 0
    exported: dict[str, list[int]] = field(default_factory=dict)  # signal: [requests, bytes]
    hanging_connections: int | None = None
    uninstrumented_cleanly: bool | None = None
    rss_before: int | None = None  # resident bytes right before execute() (sample_rss)
    rss_peak: int | None = None  # the highest resident bytes seen during it
    # Live memory blocks (sys.getallocatedblocks(), after a full collection) the run left
    # behind, its pipeline dropped, its exports flushed and the scraper stopped, still
    # instrumented (sample_rss). It counts allocations, not bytes: beside the RSS figures
    # (bytes, but moved by the allocator too) it says whether objects are kept per row.
    blocks_kept: int | None = None
    linger_s: float = 0.0  # after tear-down, until the threads the variant started ended
    lingering_threads: int = 0  # still alive at the deadline
    # This process's CPU time (every thread) during the run: unlike wall time, not lengthened
    # by other processes competing for the CPUs.
    cpu_s: float = 0.0
    gc_s: float = 0.0  # the collector's pauses during the run (GcClock)
    gc_full: int = 0  # full collections during the run
    gc_phase: float = 0.0  # where in the collector's cycle the run started (start_cycle_at)
    evidence: dict[str, int] = field(default_factory=dict)  # see Session.evidence
    left_patched: list[str] | None = None  # see Session.left_patched


def run_once(
    variant: Variant,
    workload: Workload,
    sink: RemoteSink,
    *,
    trace_memory: bool = False,
    sample_rss: bool = False,
    gc_phase: float = 0.0,
) -> Sample:
    """One execute() of the workload under the variant, started `gc_phase` (0-1) of the way
    through the collector's cycle (`gctime.start_cycle_at`).

    After the tear-down, waits (untimed) for the threads the variant started to end, so an
    exporter still retrying a dead collector does not run during the next variant's run.
    """
    threads_before = set(threading.enumerate())
    with tempfile.TemporaryDirectory(prefix="ondine-otel-bench-") as checkpoint_dir:
        before = sink.totals()
        with session(variant, sink) as active:
            pipeline = build_pipeline(workload, checkpoint_dir, steps=active.steps)
            for observer in active.observers:
                pipeline.add_observer(observer)
            gc.collect()
            blocks_before = sys.getallocatedblocks() if sample_rss else None
            start_cycle_at(gc_phase)
            active.start()
            sampler = PeakSampler() if sample_rss else None
            rss_before = rss_bytes() if sample_rss else None
            if sampler is not None:
                sampler.start()
            if trace_memory:
                tracemalloc.start()
            clock = GcClock()
            clock.start()
            cpu_started = time.process_time()
            started = time.perf_counter()
            try:
                cost, rows = execute(pipeline, workload)
                seconds = time.perf_counter() - started
                cpu_s = time.process_time() - cpu_started
            finally:
                clock.stop()
                peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
                if trace_memory:
                    tracemalloc.stop()
                rss_peak = sampler.stop() if sampler is not None else None
            del pipeline
            blocks_kept = _blocks_kept(active, blocks_before)
        after = sink.totals()
    linger_s, lingering = _wait_for_threads(threads_before)
    scraper = active.scraper
    return Sample(
        variant=variant.name,
        seconds=seconds,
        cpu_s=cpu_s,
        gc_s=clock.seconds,
        gc_full=clock.full,
        gc_phase=gc_phase,
        cost=cost,
        rows=rows,
        peak_bytes=peak,
        teardown_s=active.teardown_s,
        shutdown_timeout=active.shutdown_timeout,
        scrapes=scraper.scrapes if scraper is not None else 0,
        scrape_failures=scraper.failures if scraper is not None else 0,
        exported={
            signal: [after[signal][0] - before[signal][0], after[signal][1] - before[signal][1]]
            for signal in after
        },
        hanging_connections=active.hanging_connections,
        uninstrumented_cleanly=active.uninstrumented_cleanly,
        rss_before=rss_before,
        rss_peak=rss_peak,
        blocks_kept=blocks_kept,
        linger_s=linger_s,
        lingering_threads=lingering,
        evidence=active.evidence,
        left_patched=active.left_patched,
    )


def _blocks_kept(active: Session, before: int | None) -> int | None:
    """Blocks alive now that were not before the run (untimed; see Sample.blocks_kept)."""
    if before is None:
        return None
    if active.scraper is not None:
        active.scraper.stop()  # no scrape in flight while counting (stop() is idempotent)
    if active.flush is not None:
        active.flush()
    gc.collect()
    return sys.getallocatedblocks() - before


def _wait_for_threads(before: set[threading.Thread]) -> tuple[float, int]:
    """Seconds until no thread started since `before` is alive (the sink's own request
    handlers aside), and how many still were at the deadline."""
    started = time.perf_counter()
    deadline = started + LINGER_DEADLINE_S
    while True:
        alive = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and "process_request" not in t.name
        ]
        if not alive or time.perf_counter() > deadline:
            return time.perf_counter() - started, len(alive)
        time.sleep(0.02)


def round_orders(variants: Sequence[Variant], rounds: int, salt: str) -> list[list[Variant]]:
    """A different order per round, the same on every rerun."""
    rng = random.Random(f"{SEED}-{salt}")
    orders: list[list[Variant]] = []
    for _ in range(rounds):
        order = list(variants)
        rng.shuffle(order)
        while orders and len(order) > 1 and order == orders[-1]:
            rng.shuffle(order)
        orders.append(order)
    return orders


@dataclass
class Rounds:
    timed: dict[str, list[Sample]]
    traced: dict[str, list[Sample]]
    orders: list[list[str]]
    phases: list[float]  # where in the collector's cycle each timed round started


def round_phases(rounds: int, salt: str) -> list[float]:
    """Where in the collector's cycle each round starts its runs (every variant of a round
    alike): spread evenly over the cycle in a seeded order, so a few rounds already cover it."""
    phases = [(index + 0.5) / rounds for index in range(rounds)]
    random.Random(f"{SEED}-{salt}-gc").shuffle(phases)
    return phases


def interleaved(
    variants: Sequence[Variant],
    workload: Workload,
    sink: RemoteSink,
    *,
    warmup: int,
    rounds: int,
    memory_rounds: int,
    label: str,
    progress: Callable[[str], None],
) -> Rounds:
    """Warm-up rounds (discarded), timed rounds, then tracemalloc rounds (own, slower). Every
    run of a timed round starts at that round's point of the collector's cycle."""
    timed: dict[str, list[Sample]] = {v.name: [] for v in variants}
    traced: dict[str, list[Sample]] = {v.name: [] for v in variants}
    plan: list[tuple[str, dict[str, list[Sample]] | None, list[Variant], bool, float]] = []
    plan += [(f"warm-up {i + 1}", None, list(variants), False, 0.0) for i in range(warmup)]
    orders = round_orders(variants, rounds, label)
    phases = round_phases(rounds, label)
    plan += [
        (f"round {i + 1}/{rounds}", timed, order, False, phase)
        for i, (order, phase) in enumerate(zip(orders, phases, strict=True))
    ]
    plan += [
        (f"memory {i + 1}/{memory_rounds}", traced, order, True, 0.0)
        for i, order in enumerate(round_orders(variants, memory_rounds, f"{label}-memory"))
    ]
    for step, into, order, trace_memory, phase in plan:
        for variant in order:
            sample = run_once(variant, workload, sink, trace_memory=trace_memory, gc_phase=phase)
            if into is not None:
                into[variant.name].append(sample)
            mib = f"  peak {sample.peak_bytes / 2**20:.1f} MiB" if sample.peak_bytes else ""
            progress(f"  {label:<16} {step:<12} {variant.name:<20} {sample.seconds:7.3f} s{mib}")
    return Rounds(timed, traced, [[v.name for v in order] for order in orders], phases)
