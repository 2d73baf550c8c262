"""What ondine-otel adds to a run, counted in machine instructions: the time targets' figure
without this machine's noise.

On these 2-vCPU machines each vCPU flips between a fast and a ~2x slower state every 50 ms-1 s,
so two timed runs of the same code differ by ±5-10 % and a median over 20 rounds still moves by
±3 points: the timed bench cannot tell 1.02 from 1.06. An instruction count does not move.
Each variant runs in its own process under valgrind's callgrind, which counts every instruction
of every thread (ondine's, ondine-otel's, the SDK's, the exporters' and /metrics server's
threads, the garbage collector, the interpreter); the count covers exactly the span of the
timed bench's measurement: `execute()`, started at a given point of the collector's cycle.

What differs from a timed run, and how it is kept the same:
- Under callgrind a run takes ~50-100x longer, so work driven by a clock would come that much
  more often per row. In the timed bench's ~1.5 s run none of it falls due (span batches every
  5 s, metric exports every 15 s, progress events every 5 s; pending calls fold by count, 256,
  well before their 0.5 s): here those clocks are set out of reach. The `chat` spans the rate
  admits after the first 100 (1 a second: one or two in a timed run, a hundred here) are
  left out, about 0.01 % of the run. The scrapes that do fall in a timed run (every 0.5 s: 3)
  are made at the end of the run, inside the count, each served by the run's /metrics
  thread; 3 per 10,000 rows.
- The collector: a run costs more or less depending on where in the collector's cycle it
  starts (benchmarks/gctime.py); each variant is counted at the same spread of starting points
  and the ratio is taken between the means.
- Instructions are not time: a cache miss costs more than an add. `--cache-sim` adds
  callgrind's cache simulation and its cycle estimate (Ir + 10 per L1 miss + 100 per
  last-level miss).

``python -m benchmarks.instructions [--rows N] [--stream-rows N] [--phases K] [--cache-sim]``
prints a table and writes ``results/instructions-<date>.json``; needs valgrind (Debian
package ``valgrind``). The processes run two at a time: counts do not depend on the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent

#: Scrapes that fall in a timed run, per 10,000 rows: the timed bench scrapes every 0.5 s and
#: a 10k-row instant run takes ~1.5 s (a 100k-row stream, 8-12 s, sees 16-24: counted as 30).
SCRAPES_PER_10K_ROWS = 3
#: Clock-driven intervals set out of a counted run's reach (a counted run takes minutes).
_FAR_MS = str(24 * 3600 * 1000)
_QUIET_CLOCKS = {
    "OTEL_BSP_SCHEDULE_DELAY": _FAR_MS,
    "OTEL_METRIC_EXPORT_INTERVAL": _FAR_MS,
    "ONDINE_OTEL_PROGRESS_INTERVAL": str(24 * 3600),
    "ONDINE_OTEL_LLM_SPAN_RATE": "0",
}
INSTANT_VARIANTS = (
    "bare",
    "bare_2",
    "ours",
    "ours_no_chat_spans",
    "app_meter",
    "otel_observer",
    "zero_code",
)
STREAM_VARIANTS = ("bare", "ours")
TARGET = 1.03
WARMUP_ROWS = 200
#: callgrind's cycle estimate: what one miss costs, in instructions' time.
L1_MISS_CYCLES = 10
LL_MISS_CYCLES = 100


@dataclass(frozen=True)
class Job:
    """One scenario: which rows, streamed or not, which variants."""

    name: str
    rows: int
    stream_chunk: int | None
    variants: tuple[str, ...]
    phases: int = 1  # starting points in the collector's cycle


@dataclass
class Count:
    """One variant's counts, one per starting point of the collector's cycle."""

    variant: str
    phases: list[float]
    instructions: list[int]
    cycles: list[int] | None = None  # with --cache-sim
    rows: list[int] = field(default_factory=list)
    cost: list[str] = field(default_factory=list)
    scrapes: list[int] = field(default_factory=list)  # made inside the count

    def mean(self, what: str = "instructions") -> float:
        values = self.instructions if what == "instructions" else self.cycles
        if not values:
            raise ValueError(f"no {what} counted for {self.variant}")
        return sum(values) / len(values)


def phases(count: int) -> list[float]:
    """`count` starting points spread evenly over the collector's cycle, as the timed bench's
    rounds are (`runner.round_phases`): the midpoints. Not 0: right after a full collection is
    one particular point, where a bare 10k-row run ends just short of its third full
    collection and a run that promotes a few more objects pays one (benchmarks/README.md)."""
    return [(index + 0.5) / count for index in range(count)]


# --- the counted process ---------------------------------------------------------------------


def _child(variant_name: str, rows: int, chunk: int | None, at: list[float], scrapes: int) -> None:
    """Set up as the timed bench does, then for each phase: tell the parent `ready`, wait,
    run, scrape, tell it `done`, wait. The parent zeroes and dumps the counters in between."""
    from benchmarks import isolation

    isolation.prepare_process()
    _quiet_clocks()
    from benchmarks import variants
    from benchmarks.gctime import start_cycle_at
    from benchmarks.peer import RemoteSink
    from benchmarks.workload import Workload, execute

    variant = variants.BY_NAME[variant_name]
    control_in = os.fdopen(int(os.environ["BENCH_CONTROL_IN"]), "r")
    control_out = os.fdopen(int(os.environ["BENCH_CONTROL_OUT"]), "w")
    sink = RemoteSink()
    warmup = Workload("offline", WARMUP_ROWS)
    with tempfile.TemporaryDirectory(prefix="ondine-otel-instructions-") as directory:
        with variants.session(variant, sink) as active:
            execute(_pipeline(warmup, directory, active), warmup)
        workload = Workload("offline", rows, stream_chunk=chunk)
        for phase in at:
            with variants.session(variant, sink) as active:
                pipeline = _pipeline(workload, directory, active)
                gc.collect()
                start_cycle_at(phase)
                _say(control_out, "ready")
                control_in.readline()
                cost, done = execute(pipeline, workload)
                scraper = active.scraper
                if scraper is not None:
                    for _ in range(scrapes):
                        scraper.scrape_once()
                made = scraper.scrapes if scraper is not None else 0
                _say(control_out, f"done {done} {cost} {made}")
                control_in.readline()
                del pipeline
    sink.close()
    _say(control_out, "end")


def _pipeline(workload: Any, directory: str, active: Any) -> Any:
    """The workload's pipeline with the variant's builder steps and observers (as the timed
    bench's `run_once` builds it)."""
    from benchmarks.workload import build_pipeline

    pipeline = build_pipeline(workload, directory, steps=active.steps)
    for observer in active.observers:
        pipeline.add_observer(observer)
    return pipeline


def _quiet_clocks() -> None:
    """Set every clock that would fire during a counted run out of its reach (see above)."""
    from ondine_otel.telemetry import llm_calls

    os.environ.update(_QUIET_CLOCKS)  # after prepare_process(), which drops OTEL_* variables
    llm_calls.FOLD_AFTER_NS = 24 * 3600 * 10**9  # a module constant, read at every fold


def _say(out: IO[str], line: str) -> None:
    out.write(line + "\n")
    out.flush()


# --- the counting parent ---------------------------------------------------------------------


def count(
    job: Job,
    variant: str,
    at: list[float],
    out_dir: Path,
    cache_sim: bool = False,
    scrapes: int = SCRAPES_PER_10K_ROWS,
) -> Count:
    """Run `variant` of `job` under callgrind; its counts at each phase."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    prefix = out_dir / f"{job.name}-{variant}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={prefix}.%p",
        f"--cache-sim={'yes' if cache_sim else 'no'}",
        "--dump-line=no",
        "--compress-strings=no",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        variant,
        "--rows",
        str(job.rows),
        "--phase-list",
        ",".join(str(p) for p in at),
        "--scrapes",
        str(scrapes),
    ]
    if job.stream_chunk is not None:
        command += ["--stream-chunk", str(job.stream_chunk)]
    env = {
        **os.environ,
        "BENCH_CONTROL_IN": str(to_child_r),
        "BENCH_CONTROL_OUT": str(from_child_w),
        "PYTHONHASHSEED": "0",
    }
    process = subprocess.Popen(
        command,
        env=env,
        pass_fds=(to_child_r, from_child_w),
        cwd=HERE.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(to_child_r)
    os.close(from_child_w)
    counted = Count(variant, list(at), [], [] if cache_sim else None)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr or []), daemon=True)
    reader.start()
    with os.fdopen(from_child_r, "r") as replies, os.fdopen(to_child_w, "w") as orders:
        for index in range(len(at)):
            _expect(replies, "ready", process, stderr)
            _control("-z", process.pid)
            _say(orders, "go")
            _, done, cost, made = _expect(replies, "done", process, stderr).split()
            label = f"phase{index}"
            _control("-d", process.pid, label)
            _say(orders, "next")
            events = _read_dump(prefix, process.pid, label)
            counted.instructions.append(events["Ir"])
            if counted.cycles is not None:
                counted.cycles.append(cycle_estimate(events))
            counted.rows.append(int(done))
            counted.cost.append(cost)
            counted.scrapes.append(int(made))
        _expect(replies, "end", process, stderr)
    if process.wait() != 0:
        raise RuntimeError(f"{variant}: the counted process failed:\n{''.join(stderr)[-3000:]}")
    return counted


def _expect(replies: IO[str], word: str, process: subprocess.Popen[str], err: list[str]) -> str:
    line = replies.readline()
    if not line.startswith(word):
        process.kill()
        process.wait()
        raise RuntimeError(
            f"expected {word!r} from the counted process, got {line!r}:\n{''.join(err)[-3000:]}"
        )
    return line.strip()


def _control(option: str, pid: int, label: str | None = None) -> None:
    """callgrind_control: zero (-z) or dump (-d) the counters of a process under callgrind."""
    command = ["callgrind_control", option, *([label] if label else []), str(pid)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0 or "OK" not in result.stdout:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")


def _read_dump(prefix: Path, pid: int, label: str) -> dict[str, int]:
    """The event totals of the dump with this trigger label."""
    for path in sorted(prefix.parent.glob(f"{prefix.name}.{pid}.*")):
        lines = path.read_text(errors="replace").splitlines()
        if f"desc: Trigger: dump {label}" not in lines:
            continue
        names: list[str] = []
        for line in lines:
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith("summary:"):
                return dict(zip(names, (int(v) for v in line.split()[1:]), strict=True))
    raise RuntimeError(f"no callgrind dump {label!r} for process {pid} under {prefix.parent}")


def cycle_estimate(events: dict[str, int]) -> int:
    """callgrind's estimate of cycles from instructions and simulated cache misses."""
    l1 = events["I1mr"] + events["D1mr"] + events["D1mw"]
    ll = events["ILmr"] + events["DLmr"] + events["DLmw"]
    return events["Ir"] + L1_MISS_CYCLES * l1 + LL_MISS_CYCLES * ll


def ratios(counts: dict[str, Count], what: str = "instructions") -> dict[str, float]:
    """Each variant's mean count over the bare run's (same phases)."""
    bare = counts["bare"].mean(what)
    return {name: c.mean(what) / bare for name, c in counts.items()}


def scrapes(job: Job, per_10k: int) -> int:
    """The scrapes counted in one instrumented run of `job`."""
    return round(per_10k * job.rows / 10_000)


def jobs(rows: int, stream_rows: int, stream_chunk: int, phase_count: int) -> list[Job]:
    """The instant run at `phase_count` starting points; the stream at one: it passes through
    dozens of full collections, so where it starts moves its count by a fraction of one."""
    listed = [Job("instant", rows, None, INSTANT_VARIANTS, phase_count)]
    if stream_rows:
        listed.append(Job("stream", stream_rows, stream_chunk, STREAM_VARIANTS, 1))
    return listed


def run(
    listed: Sequence[Job], cache_sim: bool, workers: int, per_10k: int = SCRAPES_PER_10K_ROWS
) -> dict[str, Any]:
    """Every job's variants, `workers` processes at a time; counts and ratios by job."""
    with (
        tempfile.TemporaryDirectory(prefix="ondine-otel-callgrind-") as directory,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        futures = {
            (job.name, variant): pool.submit(
                count,
                job,
                variant,
                phases(job.phases),
                Path(directory),
                cache_sim,
                scrapes(job, per_10k),
            )
            for job in listed
            for variant in job.variants
        }
        results = {key: future.result() for key, future in futures.items()}
    doc: dict[str, Any] = {"scrapes_per_10k_rows": per_10k, "jobs": {}}
    for job in listed:
        counts = {variant: results[(job.name, variant)] for variant in job.variants}
        entry: dict[str, Any] = {
            "rows": job.rows,
            "phases": phases(job.phases),
            "scrapes": scrapes(job, per_10k),
            "stream_chunk": job.stream_chunk,
            "counts": {name: asdict(c) for name, c in counts.items()},
            "instruction_ratio": ratios(counts),
        }
        if cache_sim:
            entry["cycle_ratio"] = ratios(counts, "cycles")
        doc["jobs"][job.name] = entry
    return doc


def render(doc: dict[str, Any]) -> str:
    """A table per job: mean count, per row, ratio to bare, and the target's verdict."""
    lines: list[str] = []
    for name, entry in doc["jobs"].items():
        chunk = entry["stream_chunk"]
        streamed = f", streamed in {chunk:,}-row chunks" if chunk else ""
        lines += [
            f"### {name}: {entry['rows']:,} rows{streamed}, "
            f"{len(entry['phases'])} starting point(s) in the collector's cycle, "
            f"{entry['scrapes']} scrapes counted in an instrumented run",
            "",
            "| variant | instructions (mean) | per row | ratio | cycle estimate ratio | target |",
            "|---|---:|---:|---:|---:|---|",
        ]
        cycles = entry.get("cycle_ratio", {})
        for variant, ratio in entry["instruction_ratio"].items():
            counted = entry["counts"][variant]["instructions"]
            mean = sum(counted) / len(counted)
            cycle = f"{cycles[variant]:.4f}" if variant in cycles else "–"
            lines.append(
                f"| {variant} | {mean:,.0f} | {mean / entry['rows']:,.0f} | {ratio:.4f} | "
                f"{cycle} | {_verdict(variant, ratio, cycles.get(variant))} |"
            )
        lines.append("")
    return "\n".join(lines)


def _verdict(variant: str, ratio: float, cycles: float | None) -> str:
    if variant.startswith("bare"):
        return "noise" if variant != "bare" else ""
    met = max(ratio, cycles or 0.0) <= TARGET
    return f"≤ {TARGET}: {'yes' if met else '**NO**'}"


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="instant rows (execute())")
    parser.add_argument("--stream-rows", type=int, default=100_000, help="0: no stream")
    parser.add_argument("--stream-chunk", type=int, default=None, help="default 10,000")
    parser.add_argument(
        "--phases", type=int, default=2, help="instant: starting points in the GC cycle"
    )
    parser.add_argument("--cache-sim", action="store_true", help="also estimate cycles")
    parser.add_argument("--workers", type=int, default=2, help="counted processes at a time")
    parser.add_argument(
        "--scrapes", type=int, default=SCRAPES_PER_10K_ROWS, help="scrapes per 10,000 rows"
    )
    parser.add_argument("--only", default="", help="comma-separated variants (bare is kept)")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--phase-list", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        chunk = args.stream_chunk  # given only for a streamed job
        at = [float(p) for p in args.phase_list.split(",")]
        _child(args.child, args.rows, chunk, at, args.scrapes)
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: install the Debian package valgrind")
    listed = jobs(args.rows, args.stream_rows, args.stream_chunk or 10_000, args.phases)
    if args.only:
        keep = {"bare", *args.only.split(",")}
        listed = [
            dataclasses.replace(job, variants=tuple(v for v in job.variants if v in keep))
            for job in listed
        ]
    doc = run(listed, args.cache_sim, args.workers, args.scrapes)
    doc["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    text = render(doc)
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / f"instructions-{doc['date'][:10]}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
