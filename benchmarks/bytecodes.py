"""What ondine-otel adds to an instant row, counted in Python bytecodes: a figure without noise.

Timed ratios on these machines move by ±1.5-3 points between runs of the same code; a count of
the bytecodes executed does not move at all. Each variant runs `rows` and `2 * rows` instant
rows under an opcode tracer (every thread), and the difference per extra row cancels what a run
costs once (set-up, stage spans, tear-down). Reported: bytecodes per row, bare and under
`instrument()` as the bench's `ours_no_chat_spans` (OTLP to the peer's sink, Prometheus;
no `chat` spans: their cost is per span, not per row), and the functions whose
counts differ.

``python -m benchmarks.bytecodes [--rows N]`` prints it; a test holds the share below a bound.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

#: (file, first line, function) of a code object, the file cut at site-packages.
Where = tuple[str, int, str]


@dataclass(frozen=True)
class PerRow:
    """Bytecodes per extra row, by function, for one variant."""

    by_function: dict[Where, float]

    @property
    def total(self) -> float:
        return sum(self.by_function.values())


_ROOT = str(Path(__file__).resolve().parent.parent) + os.sep


def _where(frame: FrameType) -> Where:
    code = frame.f_code
    name = code.co_filename.split("site-packages" + os.sep)[-1].removeprefix(_ROOT)
    return name, code.co_firstlineno, code.co_name


def added_by_us(bare: PerRow, ours: PerRow) -> float:
    """Of what `instrument()` adds per row, the bytecodes in ondine-otel's own code."""
    return sum(
        count - bare.by_function.get(key, 0.0)
        for key, count in ours.by_function.items()
        if key[0].startswith("ondine_otel" + os.sep)
    )


@contextmanager
def _counting(counts: Counter[Where]) -> Iterator[None]:
    """Count every bytecode executed in every thread while inside."""

    def trace(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts[_where(frame)] += 1
        return trace

    threading.settrace(trace)
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type,unused-ignore]


def _run(rows: int, instrumented: bool, counts: Counter[Where] | None) -> None:
    """One run set up as the bench's `bare` or `ours_no_chat_spans` variant (its scraper is
    never started: scrapes come when a clock says, and would blur the count)."""
    from benchmarks import variants
    from benchmarks.peer import RemoteSink
    from benchmarks.workload import Workload, build_pipeline, execute

    variant = variants.OURS_NO_CHAT if instrumented else variants.BARE
    workload = Workload("offline", rows)
    sink = RemoteSink()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="ondine-otel-bytecodes-") as checkpoint_dir,
            variants.session(variant, sink) as active,
        ):
            pipeline = build_pipeline(workload, checkpoint_dir, steps=active.steps)
            if counts is None:
                execute(pipeline, workload)
            else:
                with _counting(counts):
                    execute(pipeline, workload)
    finally:
        sink.close()


def per_row(rows: int, instrumented: bool) -> PerRow:
    """Bytecodes per row: counted over `2 * rows` minus over `rows`, divided by `rows`."""
    _run(20, instrumented, None)  # warm-up: imports and first-run caches stay out
    small: Counter[Where] = Counter()
    large: Counter[Where] = Counter()
    _run(rows, instrumented, small)
    _run(2 * rows, instrumented, large)
    keys = set(small) | set(large)
    return PerRow({key: (large[key] - small[key]) / rows for key in keys})


def compare(rows: int) -> tuple[PerRow, PerRow]:
    """(bare, instrumented)."""
    return per_row(rows, False), per_row(rows, True)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bytecodes", description=__doc__)
    parser.add_argument("--rows", type=int, default=500, help="rows of the smaller run")
    parser.add_argument("--json", action="store_true", help="one JSON line: bare, ours, ours_own")
    args = parser.parse_args(argv)
    from benchmarks import isolation

    isolation.prepare_process()
    bare, ours = compare(args.rows)
    extra = ours.total - bare.total
    if args.json:
        own = added_by_us(bare, ours)
        print(json.dumps({"bare": bare.total, "ours": ours.total, "ours_own": own}))
        return 0
    print(f"bytecodes per instant row: bare {bare.total:,.0f}, instrument() {ours.total:,.0f}")
    print(f"added: {extra:,.1f} ({extra / bare.total:.2%})")
    keys = set(bare.by_function) | set(ours.by_function)
    differences = {k: ours.by_function.get(k, 0) - bare.by_function.get(k, 0) for k in keys}
    for key, added in sorted(differences.items(), key=lambda item: -abs(item[1]))[:12]:
        if abs(added) >= 0.05:
            print(f"  {added:+8.2f}  {key[0]}:{key[1]} {key[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
