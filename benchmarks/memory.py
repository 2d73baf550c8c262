"""Peak resident memory of a large run, each run in a fresh interpreter.

A process never gives all its memory back, so the peak RSS of a second run in the same
process says little about the run itself. Here every run is a child (``python -m
benchmarks.memory VARIANT ROWS [CHUNK]``; with CHUNK, streamed in chunks of that many rows)
that reports its RSS just before ``execute()`` and the highest RSS a 10 ms sampler saw during
it; the parent interleaves the children like rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.runner import Sample, round_orders
from benchmarks.variants import Variant

_MARK = "BENCH-SAMPLE "


def measure_children(
    variants: Sequence[Variant],
    rows: int,
    *,
    rounds: int,
    label: str,
    progress: Callable[[str], None],
    stream_chunk: int | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], list[list[str]]]:
    """Interleaved rounds, one child per run; each sample carries rss_before and rss_peak."""
    samples: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    orders = round_orders(variants, rounds, label)
    for i, order in enumerate(orders):
        for variant in order:
            sample = _child(variant.name, rows, stream_chunk)
            samples[variant.name].append(sample)
            delta = (sample["rss_peak"] - sample["rss_before"]) / 1e6
            progress(
                f"  {label:<16} round {i + 1}/{rounds:<6} {variant.name:<20} "
                f"{sample['seconds']:7.3f} s  RSS +{delta:.1f} MB"
            )
    return samples, [[v.name for v in order] for order in orders]


def _child(variant: str, rows: int, stream_chunk: int | None) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    chunk = [] if stream_chunk is None else [str(stream_chunk)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", variant, str(rows), *chunk],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_MARK):
            found: dict[str, Any] = json.loads(line[len(_MARK) :])
            return found
    raise RuntimeError(
        f"memory child {variant} ({rows} rows) exited {done.returncode} without a sample:\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )


def _main(argv: Sequence[str]) -> int:
    from benchmarks import isolation
    from benchmarks.peer import RemoteSink
    from benchmarks.runner import run_once
    from benchmarks.variants import BY_NAME, install_tracer_switch
    from benchmarks.workload import Workload

    name, rows = argv[0], int(argv[1])
    workload = Workload("offline", rows, stream_chunk=int(argv[2]) if len(argv) > 2 else None)
    isolation.prepare_process()
    install_tracer_switch()
    sink = RemoteSink()
    sample: Sample = run_once(BY_NAME[name], workload, sink, sample_rss=True)
    sink.close()
    print(_MARK + json.dumps(asdict(sample)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
