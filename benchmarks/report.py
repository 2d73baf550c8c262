"""The results document as RESULTS.md (a table per scenario) and results/latest.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.targets import RSS_OVER_BARE_MB, SCRAPE_100_RUNS_MS


def write(doc: dict[str, Any], text: str, output_dir: Path) -> list[Path]:
    """RESULTS.md and results/latest.json under ``output_dir``; the paths written."""
    results = output_dir / "results" / "latest.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    markdown = output_dir / "RESULTS.md"
    markdown.write_text(text, encoding="utf-8")
    return [markdown, results]


def _cell(value: Any, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


def _yes(value: bool | None) -> str:
    return "–" if value is None else "yes" if value else "**NO**"


def _mb(value: int | None, spec: str = ".1f") -> str:
    return "–" if value is None else format(value / 1e6, spec)


def render(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["versions"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks.overhead`); method and targets in "
        "[README.md](README.md). Do not edit by hand.",
        "",
        f"- {doc['timestamp']}, {doc['duration_s']:.0f} s in all"
        + (" — **quick mode: tiny sizes, not a measurement**" if doc["quick"] else ""),
        f"- CPython {m['python']} ({m['implementation']}), {m['platform']}, "
        f"{m['cpu_count']} CPUs" + _load_note(m),
        "- " + ", ".join(f"{name} {ver}" for name, ver in v.items() if ver),
        "",
    ]
    summary = _headline(doc["scenarios"])
    if summary:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|", *summary, ""]
    for name, scenario in doc["scenarios"].items():
        lines += [f"## {name}", "", f"{scenario['workload']}."]
        if scenario.get("note"):
            lines += ["", scenario["note"][0].upper() + scenario["note"][1:] + "."]
        lines.append("")
        lines += _RENDERERS[scenario["kind"]](scenario)
        lines.append("")
    return "\n".join(lines)


def _timing(name: str, r: dict[str, Any], per_round: str | None) -> str:
    """The leading cells of a variant's row: times, rate, ratios, µs per call."""
    ratio = f"{_cell(r['time_ratio'], '.3f')} | {_cell(r.get('cpu_ratio'), '.3f')}" + (
        "" if per_round is None else f" | {per_round}"
    )
    return (
        f"| {name} | {_cell(r['median_s'], '.3f')} | {_cell(r['min_s'], '.3f')}–"
        f"{_cell(r['max_s'], '.3f')} | {_cell(r['rows_per_s'], ',.0f')} | {ratio} | "
        f"{_cell(r['per_call_us'] if name != 'bare' else None, '+.1f')} |"
    )


def _load_note(machine: dict[str, Any]) -> str:
    """The 1-minute load average around the run; near the CPU count means a shared machine."""
    load = machine.get("load_average_1min") or {}
    start, end = load.get("start"), load.get("end")
    if start is None or end is None:
        return ""
    busy = max(start, end) > (machine["cpu_count"] or 1) * 0.75
    return f"; load average {start:g} at start, {end:g} at end" + (
        " — **the machine was busy with other work: these ratios are noise**" if busy else ""
    )


def _rounds(s: dict[str, Any]) -> list[str]:
    c = s["config"]
    out = [
        f"{c['warmup_rounds']} warm-up, {c['timed_rounds']} timed rounds (each in its own "
        f"order), {c['tracemalloc_rounds']} tracemalloc round(s).",
        "",
        "| variant | median s | min–max s | rows/s | time ratio | CPU ratio "
        "| per round: median [95 % interval] (min–max) | µs/call | GC ms (full) "
        "| peak MB (tracemalloc) | shutdown s | target | within |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in s["variants"].items():
        rr = r["round_ratios"]
        per_round = _per_round(r) if rr else "–"
        out.append(
            _timing(name, r, per_round)
            + f" {_gc(r)} | {_mb(r['peak_tracemalloc_bytes'])} | "
            + f"{_cell(r['teardown_s_median'], '.3f')} | {r.get('target', '–')} | "
            + f"{_yes(r.get('within_target'))} |"
        )
    n = s.get("noise")
    if n:
        out += [
            "",
            f"Noise: bare_2 / bare = {n['time_ratio']:.3f} (medians; CPU "
            f"{_cell(n.get('cpu_ratio'), '.3f')}); per round "
            f"{_cell(n['round_ratio_min'], '.3f')}–{_cell(n['round_ratio_max'], '.3f')}.",
        ]
    return out


def _per_round(r: dict[str, Any]) -> str:
    """The per-round ratios' median, its 95 % interval (if the rounds allow one), their range."""
    rr, ci = r["round_ratios"], r.get("round_ratio_ci95")
    interval = f" [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else ""
    return f"{r['round_ratio_median']:.3f}{interval} ({min(rr):.3f}–{max(rr):.3f})"


def _gc(r: dict[str, Any]) -> str:
    """The collector's median pause total, and the full collections per run (runs alike: one
    number)."""
    if r.get("gc_s_median") is None:
        return "–"
    full = sorted(set(r.get("gc_full_per_run") or []))
    runs = "/".join(str(n) for n in full) if full else "–"
    return f"{r['gc_s_median'] * 1000:.0f} ({runs})"


def _rss(s: dict[str, Any]) -> list[str]:
    out = [
        "| variant | median s | min–max s | rows/s | time ratio | CPU ratio | µs/call | RSS Δ MB "
        "| RSS Δ min–max MB | over bare MB | target | within |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in s["variants"].items():
        spread = r.get("rss_delta_range_bytes")
        low_high = f"{_mb(spread[0])}–{_mb(spread[1])}" if spread else "–"
        out.append(
            _timing(name, r, None) + f" {_mb(r['rss_delta_bytes'])} | {low_high} | "
            f"{_mb(r['rss_over_bare_bytes'] if name != 'bare' else None, '+.1f')} | "
            f"{r.get('target', '–')} | {_yes(r.get('within_target'))} |"
        )
    return out


def _stream(s: dict[str, Any]) -> list[str]:
    c, g = s["config"], s["growth"]
    out = [f"{c['rounds']} round(s) at {c['rows']:,} rows and at {c['double_rows']:,}.", ""]
    out += _rss(s)
    n = s.get("noise")
    if n:
        out += [
            "",
            f"Noise: bare_2 / bare = {n['time_ratio']:.3f} (medians; CPU "
            f"{_cell(n.get('cpu_ratio'), '.3f')}).",
        ]
    out += [
        "",
        f"| variant | RSS Δ MB at {c['rows']:,} rows | at {c['double_rows']:,} rows | growth MB "
        f"| blocks kept at {c['rows']:,} rows | at {c['double_rows']:,} rows | growth |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("bare", "ours"):
        r = g[name]
        out.append(
            f"| {name} | {_mb(r['rss_delta_smaller_bytes'])} | "
            f"{_mb(r['rss_delta_larger_bytes'])} | {_mb(r['growth_bytes'], '+.1f')} | "
            f"{_count(r.get('blocks_kept_smaller'))} | {_count(r.get('blocks_kept_larger'))} | "
            f"{_count(r.get('blocks_growth'), '+,')} |"
        )
    out += [
        "",
        f"ours' growth over bare's: {_mb(g['ours_over_bare_bytes'], '+.1f')} MB; in live "
        f"blocks kept {_count(g.get('ours_over_bare_blocks'), '+,')} (one object kept per row "
        f"would be {c['double_rows'] - c['rows']:+,}).",
    ]
    return out


def _count(value: int | None, spec: str = ",") -> str:
    return "–" if value is None else format(value, spec)


def _shutdown(s: dict[str, Any]) -> list[str]:
    out = [
        "| variant | shutdown() s (median) | max s | timeout s | within timeout "
        "| its threads still running after shutdown() returned, s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, r in s["variants"].items():
        out.append(
            f"| {name} | {r['median_s']:.3f} | {r['max_s']:.3f} | {r['timeout_s']:g} | "
            f"{_yes(r['within_timeout'])} | {r['threads_alive_after_s']:.2f}"
            f"{' (some past the deadline)' if r['threads_alive_at_deadline'] else ''} |"
        )
    return out


def _scrape(s: dict[str, Any]) -> list[str]:
    out = [
        f"Target: {s['target']}.",
        "",
        "| active runs | median ms | min–max ms | scrapes | series | page bytes "
        "| runs on page | within |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, r in s["active_runs"].items():
        out.append(
            f"| {n} | {r['median_ms']:.2f} | {r['min_ms']:.2f}–{r['max_ms']:.2f} | "
            f"{r['scrapes']} | {r['series']} | {r['page_bytes']:,} | {r['run_ids_on_page']} | "
            f"{_yes(r['within_target'])} |"
        )
    return out


def _coverage(s: dict[str, Any]) -> list[str]:
    out = [
        "What each variant exported to the OTLP sink for one run (untimed).",
        "",
        "| variant | spans | spans by name | metrics | cost metric |",
        "|---|---:|---|---:|---|",
    ]
    for name, r in s["variants"].items():
        by_name = ", ".join(f"{k} ×{n}" for k, n in r["spans_by_name"].items()) or "–"
        out.append(
            f"| {name} | {r['spans']} | {by_name} | {len(r['metrics'])} | "
            f"{'yes' if r['cost_metric'] else 'no'} |"
        )
    return out


_RENDERERS = {
    "rounds": _rounds,
    "rss": _rss,
    "stream": _stream,
    "shutdown": _shutdown,
    "scrape": _scrape,
    "coverage": _coverage,
}


def _headline(scenarios: dict[str, Any]) -> list[str]:
    """One line per issue target that this run measured."""
    rows: list[str] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        rows.append(f"| {target} | {measured} | {_yes(met)} |")

    for name, s in scenarios.items():
        if s["kind"] != "rounds":
            continue
        for variant, r in s["variants"].items():
            if "target" in r:
                shutdown = (
                    f"; shutdown {_cell(r['teardown_s_max'], '.3f')} s (max) of "
                    f"{_cell(r['shutdown_timeout_s'], 'g')} s"
                    if "shutdown" in r["target"]
                    else ""
                )
                add(
                    f"{name}: {variant} {r['target']}",
                    f"{_cell(r['time_ratio'], '.3f')}× ({_cell(r['per_call_us'], '+.1f')} µs/call; "
                    f"CPU {_cell(r.get('cpu_ratio'), '.3f')}×; per round {_per_round(r)})"
                    + shutdown,
                    r["within_target"],
                )
    mem = scenarios.get("memory_100k")
    if mem:
        r = mem["variants"]["ours"]
        add(
            f"memory_100k: ours peak RSS ≤ bare + {RSS_OVER_BARE_MB:g} MB",
            f"{_mb(r['rss_over_bare_bytes'], '+.1f')} MB",
            r["within_target"],
        )
    for name, st in scenarios.items():
        if st["kind"] != "stream":
            continue
        r = st["variants"]["ours"]
        add(
            f"{name}: ours {r['target']}",
            f"{_cell(r['time_ratio'], '.3f')}× (CPU {_cell(r.get('cpu_ratio'), '.3f')}×), peak RSS "
            f"{_mb(r['rss_over_bare_bytes'], '+.1f')} MB over bare, growth "
            f"{_mb(st['growth']['ours_over_bare_bytes'], '+.1f')} MB over bare's",
            r["within_target"],
        )
    down = scenarios.get("shutdown")
    if down:
        for variant, r in down["variants"].items():
            add(
                f"shutdown: {variant} within {r['timeout_s']:g} s",
                f"{r['max_s']:.3f} s (max)",
                r["within_timeout"],
            )
    sc = scenarios.get("scrape")
    if sc:
        for n, r in sc["active_runs"].items():
            if r["within_target"] is not None:
                add(
                    f"scrape: {n} active runs ≤ {SCRAPE_100_RUNS_MS:g} ms",
                    f"{r['median_ms']:.2f} ms (median)",
                    r["within_target"],
                )
    return rows
