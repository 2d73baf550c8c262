"""How long `Telemetry.shutdown()` takes after a run: with the collector up, and hanging.

Each sample is a small instant run under `instrument()` followed by `shutdown()`, timed on
its own. With a hanging collector, exports block until the OTLP timeout; `shutdown()` must
still return within its own timeout (the job's exit must not wait for a dead collector).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from benchmarks.peer import RemoteSink
from benchmarks.runner import Sample, round_orders, run_once
from benchmarks.stats import SLACK
from benchmarks.variants import OURS, OURS_HANGING, Variant
from benchmarks.workload import Workload


def variants(timeout: float | None) -> list[Variant]:
    """Ours with the sink and with a hanging collector, shut down with `timeout` (None: its
    default)."""
    return [
        dataclasses.replace(
            v,
            name=f"{v.name}_shutdown",
            shutdown_timeout=timeout,
            description=f"{v.description.split(';')[0]}; then shutdown("
            f"{'' if timeout is None else f'timeout={timeout:g}'})",
        )
        for v in (OURS, OURS_HANGING)
    ]


def within(sample: Sample) -> bool:
    """shutdown() returned within its timeout (plus a 5 % allowance)."""
    timeout = sample.shutdown_timeout
    return timeout is not None and sample.teardown_s <= timeout * (1 + SLACK)


def measure(
    chosen: Sequence[Variant],
    workload: Workload,
    sink: RemoteSink,
    *,
    rounds: int,
    progress: Callable[[str], None],
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {v.name: [] for v in chosen}
    for i, order in enumerate(round_orders(chosen, rounds, "shutdown")):
        for variant in order:
            sample = run_once(variant, workload, sink)
            samples[variant.name].append(sample)
            progress(
                f"  {'shutdown':<16} round {i + 1}/{rounds:<6} {variant.name:<28} "
                f"shutdown {sample.teardown_s:6.3f} s (timeout {sample.shutdown_timeout:g} s)"
            )
    return samples
