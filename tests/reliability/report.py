"""Render docs/reliability.md from the figures the reliability suite recorded.

    python -m tests.reliability.report FIGURES.json docs/reliability.md

`make reliability` runs the suite with ONDINE_RELIABILITY_FIGURES=FIGURES.json and then this.
One table, one row per fault, in the order the tests ran; a row whose test failed says so in
its measured column, so the document never claims more than the last run showed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_INTRO = """# Reliability under faults

What ondine-otel does when its surroundings fail: collectors that refuse, hang, answer 503 or
answer slowly, ports already taken, Pushgateways down, runs killed, crashed and resumed, many
runs at once, 100,000-row runs, secrets planted in the input, TLS, and hostile values. Every
row is a test in `tests/reliability/` against real servers on 127.0.0.1 (fault servers in
`tests/reliability/faults.py`, the OTLP receivers of `tests/support`, real Prometheus and
Pushgateway binaries) with real ondine runs.

Timings are ratios against the same job measured in the same process, interleaved, medians
over a few repetitions; the tests assert only loose bounds (under 1.5x), the figures below are
what the last run measured. Regenerate this file with `make reliability`.
"""


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


#: Table order: the issue's order of faults, by the module that tests them.
_MODULES = (
    "test_otlp_faults",
    "test_metric_endpoints",
    "test_interrupts",
    "test_resume",
    "test_concurrency",
    "test_scale",
    "test_canaries",
    "test_bad_input",
)


def _rank(row: dict[str, Any]) -> tuple[int, int]:
    module = row["test"].split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    place = _MODULES.index(module) if module in _MODULES else len(_MODULES)
    return place, row["order"]


def render(rows: list[dict[str, Any]], when: datetime, commit: str, cpus: int) -> str:
    lines = [
        _INTRO,
        f"Last run: {when:%Y-%m-%d %H:%M} UTC, commit `{commit}`, {cpus} CPUs; "
        f"{sum(r['outcome'] == 'passed' for r in rows)} of {len(rows)} rows passed.",
        "",
        "| Fault | What the user sees | What is guaranteed | Measured (last run) |",
        "|---|---|---|---|",
    ]
    for row in sorted(rows, key=_rank):
        measured = _cell(row["measured"])
        if row["outcome"] != "passed":
            measured = f"**FAILS** (`{row['test'].split('::')[-1]}`): {measured}"
        lines.append(
            f"| {_cell(row['fault'])} | {_cell(row['sees'])} | {_cell(row['guaranteed'])} "
            f"| {measured} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.reliability.report FIGURES.json OUTPUT.md", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    if not source.exists():
        print(f"no figures at {source}: run the suite with ONDINE_RELIABILITY_FIGURES set",
              file=sys.stderr)  # fmt: skip
        return 1
    rows = json.loads(source.read_text())
    when = datetime.fromtimestamp(source.stat().st_mtime, tz=timezone.utc)
    target.write_text(render(rows, when, _commit(), os.cpu_count() or 1))
    print(f"wrote {target} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
