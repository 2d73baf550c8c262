"""Render finished OpenTelemetry spans as a terminal tree.

Lets the demo (and anyone debugging without a tracing backend) see the trace the instrumentor
produced: structure, timings, errors and the ondine/GenAI attributes, with the hundreds of
per-row LLM call spans folded so the shape of the run stays readable. The metrics summary
does the same for what a run reported through its metric instruments, so the numbers a
dashboard would show can be checked against the trace without running Prometheus.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import StatusCode
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.semconv import SPAN_LLM_OPERATION

VISIBLE_CHAT_SPANS = 3
_UNBOUNDED = 10_000  # columns: "as wide as the content" when measuring for piped output
_ATTRIBUTE_PREFIXES = ("ondine.", "gen_ai.")
_MAX_VALUE_CHARS = 60


def render_trace(spans: Sequence[ReadableSpan]) -> Tree:
    """Build a tree of ``spans`` by parent id; spans whose parent is absent become roots.

    Children are ordered by start time. Per node: name, duration, status (red when ERROR), the
    ``ondine.*`` / ``gen_ai.*`` attributes (only tokens and cost for LLM call spans) and the
    span events. Beyond the first few ``chat`` siblings, the rest collapse into one line.
    """
    ids = {_span_id(s) for s in spans}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children[parent if parent in ids else None].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: s.start_time or 0)

    traces = {s.context.trace_id for s in spans if s.context is not None}
    header = Text(f"{len(spans)} span{'s' if len(spans) != 1 else ''}", style="bold")
    if len(traces) == 1:
        header.append(f" · trace {next(iter(traces)):032x}", style="dim")
    elif traces:
        header.append(f" in {len(traces)} traces", style="dim")
    tree = Tree(header)
    _add_children(tree, children[None], children)
    return tree


def print_trace(spans: Sequence[ReadableSpan], console: Console | None = None) -> None:
    """Print :func:`render_trace` to ``console`` (default: a new stdout console)."""
    (console or Console()).print(render_trace(spans))


def _add_children(
    node: Tree,
    siblings: Sequence[ReadableSpan],
    children: Mapping[int | None, Sequence[ReadableSpan]],
    parent: ReadableSpan | None = None,
) -> None:
    """Add ``siblings`` and their ``parent``'s events under ``node``, interleaved by time.

    Interleaving shows a checkpoint between the work before and after it. Chat spans after the
    first few fold into one line, placed where the first folded one started.
    """
    chats = [s for s in siblings if _is_chat(s)]
    hidden = chats[VISIBLE_CHAT_SPANS:]
    hidden_ids = {_span_id(s) for s in hidden}
    events = parent.events if parent is not None else ()
    timeline: list[tuple[int, int, ReadableSpan | Event]] = [
        (e.timestamp, i, e) for i, e in enumerate(events)
    ]
    timeline += [(s.start_time or 0, len(events) + i, s) for i, s in enumerate(siblings)]
    for _, _, item in sorted(timeline, key=lambda entry: (entry[0], entry[1])):
        if isinstance(item, Event):
            node.add(_event_label(item, parent))
        elif _span_id(item) not in hidden_ids:
            child = node.add(_span_label(item))
            _add_children(child, children.get(_span_id(item), ()), children, item)
        elif item is hidden[0]:
            node.add(_collapsed_label(hidden))


def _span_label(span: ReadableSpan) -> Text:
    """Name, duration and status on the first line; key attributes on the second."""
    label = Text(span.name, style="bold")
    label.append(f"  {_format_duration(span.start_time, span.end_time)}", style="cyan")
    if span.status.status_code is StatusCode.ERROR:
        label.append("  ERROR", style="bold red")
        if span.status.description:
            label.append(f": {_truncate(span.status.description)}", style="red")
    elif span.status.status_code is StatusCode.OK:
        label.append("  OK", style="green")
    attrs = _key_attributes(span)
    if attrs:
        label.append("\n")
        label.append_text(_format_attributes(attrs))
    return label


def _event_label(event: Event, span: ReadableSpan | None) -> Text:
    """An event as ``◆ name  +offset  key=value ...``, offset from its span's start."""
    label = Text("◆ ", style="magenta")
    label.append(event.name, style="magenta")
    if span is not None and span.start_time is not None:
        label.append(f"  +{_format_duration(span.start_time, event.timestamp)}", style="dim")
    if event.attributes:
        label.append("  ")
        label.append_text(_format_attributes(event.attributes.items()))
    return label


def _collapsed_label(hidden: Sequence[ReadableSpan]) -> Text:
    """Stand-in for folded chat spans; keeps their errors visible."""
    label = Text(f"… {len(hidden)} more chat spans", style="dim")
    errors = sum(s.status.status_code is StatusCode.ERROR for s in hidden)
    if errors:
        label.append(f" ({errors} with errors)", style="red")
    return label


def _key_attributes(span: ReadableSpan) -> list[tuple[str, object]]:
    """The ondine/GenAI attributes worth a glance; for chat spans only tokens and cost."""
    attrs = span.attributes or {}
    keys = [k for k in attrs if k.startswith(_ATTRIBUTE_PREFIXES)]
    if _is_chat(span):
        keys = [k for k in keys if "token" in k or "cost" in k]
    return [(k, attrs[k]) for k in keys]


def _format_attributes(items: Iterable[tuple[str, object]]) -> Text:
    text = Text()
    for i, (key, value) in enumerate(items):
        if i:
            text.append("  ")
        text.append(f"{key}=", style="dim")
        text.append(_format_value(value))
    return text


def _format_value(value: object) -> str:
    """Compact values: 6 significant digits for floats, truncated strings and sequences."""
    if isinstance(value, float):
        text = f"{value:.6g}"
        return f"{value:.10f}".rstrip("0") if "e" in text else text
    if isinstance(value, (list, tuple)):
        return _truncate(", ".join(_format_value(v) for v in value))
    return _truncate(str(value))


def _format_duration(start_ns: int | None, end_ns: int | None) -> str:
    if start_ns is None or end_ns is None:
        return "unfinished"
    ms = (end_ns - start_ns) / 1e6
    if ms < 1:
        return f"{ms:.2f} ms"
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _is_chat(span: ReadableSpan) -> bool:
    return span.name == SPAN_LLM_OPERATION or span.name.startswith(f"{SPAN_LLM_OPERATION} ")


def _span_id(span: ReadableSpan) -> int:
    return span.context.span_id if span.context is not None else 0


# --- metrics summary -------------------------------------------------------------------------


def render_metrics_summary(metrics_data: MetricsData | None) -> Table:
    """A table of what the run's metric instruments report, with the Prometheus series behind
    each line: spend by model, tokens by type, rows, throughput, runs by status and LLM calls.

    Reads an SDK ``MetricsData`` (e.g. from an ``InMemoryMetricReader`` on the same
    MeterProvider as the Prometheus reader), so it shows exactly what a scrape would.
    """
    points = _data_points(metrics_data)
    table = Table(
        title="Metrics summary",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("Prometheus series", style="dim", overflow="fold")
    add = table.add_row
    for model, usd in _sum_by(points, semconv.METRIC_COST, semconv.LABEL_MODEL).items():
        add(f"spend · {model}", _format_usd(usd), "ondine_cost_usd_total")
    for kind, tokens in _sum_by(points, semconv.METRIC_TOKENS, semconv.LABEL_TYPE).items():
        add(f"tokens · {kind}", _format_count(tokens), "ondine_tokens_total")
    processed = _sum(points, semconv.METRIC_ROWS_PROCESSED)
    for name, label, series in (
        (semconv.METRIC_ROWS_PROCESSED, "rows processed", "ondine_rows_processed_total"),
        (semconv.METRIC_ROWS_FAILED, "rows failed", "ondine_rows_failed_total"),
        (semconv.METRIC_ROWS_SKIPPED, "rows skipped", "ondine_rows_skipped_total"),
    ):
        if name in points:
            add(label, _format_count(_sum(points, name)), series)
    runs = _histograms(points, semconv.METRIC_RUN_DURATION)
    seconds = sum(p.sum for p in runs)
    if runs:
        rate = f"{processed / seconds:,.0f} rows/s" if seconds > 0 else "n/a"
        add("throughput", rate, "rows ÷ ondine_run_duration_seconds_sum")
    for status, count in _sum_by(points, semconv.METRIC_RUNS, semconv.LABEL_STATUS).items():
        add(f"runs · {status}", _format_count(count), "ondine_runs_total")
    calls = _histograms(points, semconv.METRIC_GENAI_DURATION)
    if calls:
        for label, value in _describe_calls(calls):
            add(label, value, "gen_ai_client_operation_duration_seconds")
    if not table.row_count:
        add("no ondine metrics recorded", "", "")
    return table


def print_metrics_summary(metrics_data: MetricsData | None, console: Console | None = None) -> None:
    """Print :func:`render_metrics_summary` to ``console`` (default: a new stdout console).

    Piped into a file or ``grep`` there is no terminal width to fit, so the table is printed
    at its natural width instead of folding series names at rich's default 80 columns: each
    row stays one line.
    """
    console = console or Console()
    table = render_metrics_summary(metrics_data)
    natural = console.measure(table, options=console.options.update_width(_UNBOUNDED)).maximum
    if console.is_terminal or natural <= console.width:
        console.print(table)
        return
    fitted = console.width  # print() never goes wider than the console: widen it for the table
    console.width = natural
    try:
        console.print(table)
    finally:
        console.width = fitted


_Point = NumberDataPoint | HistogramDataPoint


def _data_points(metrics_data: MetricsData | None) -> dict[str, list[_Point]]:
    """Every number and histogram point by instrument name, across resources and scopes."""
    found: dict[str, list[_Point]] = defaultdict(list)
    if metrics_data is None:
        return found
    for resource in metrics_data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    if isinstance(point, (NumberDataPoint, HistogramDataPoint)):
                        found[metric.name].append(point)
    return found


def _histograms(points: Mapping[str, Sequence[_Point]], name: str) -> list[HistogramDataPoint]:
    return [p for p in points.get(name, ()) if isinstance(p, HistogramDataPoint)]


def _sum(points: Mapping[str, Sequence[_Point]], name: str) -> float:
    return sum(p.value for p in points.get(name, ()) if isinstance(p, NumberDataPoint))


def _sum_by(points: Mapping[str, Sequence[_Point]], name: str, label: str) -> dict[str, float]:
    """Counter values summed per value of ``label`` (other labels, like pipeline, folded)."""
    totals: dict[str, float] = defaultdict(float)
    for point in points.get(name, ()):
        if isinstance(point, NumberDataPoint):
            totals[str((point.attributes or {}).get(label, "unknown"))] += point.value
    return dict(sorted(totals.items()))


def _describe_calls(calls: Sequence[HistogramDataPoint]) -> list[tuple[str, str]]:
    """Rows for the call count (and failures), exact mean latency and the median's bucket."""
    count = sum(p.count for p in calls)
    errors = sum(p.count for p in calls if (p.attributes or {}).get(semconv.ERROR_TYPE))
    rows = [("LLM calls", f"{count:,}" + (f" ({errors:,} failed)" if errors else ""))]
    if count:
        rows.append(("LLM latency mean", _format_seconds(sum(p.sum for p in calls) / count)))
        median = _median_bound(calls)
        if median:
            rows.append(("LLM latency p50", median))
    return rows


def _median_bound(calls: Sequence[HistogramDataPoint]) -> str | None:
    """``≤ bound`` of the bucket holding the median call; None if the points' buckets differ.

    Buckets only bound a quantile; interpolating inside one (as histogram_quantile does)
    would invent precision the histogram does not have.
    """
    bounds = tuple(calls[0].explicit_bounds)
    if any(tuple(p.explicit_bounds) != bounds for p in calls):
        return None
    counts = [sum(column) for column in zip(*(p.bucket_counts for p in calls), strict=True)]
    rank, seen = (sum(counts) + 1) / 2, 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            if i < len(bounds):
                return f"≤ {_format_seconds(bounds[i])}"
            return f"> {_format_seconds(bounds[-1])}" if bounds else None
    return None


def _format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _format_usd(usd: float) -> str:
    """Up to 8 decimals (per-token prices are that fine), at least cents."""
    text = f"{usd:.8f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"


def _format_count(value: float) -> str:
    return f"{value:,.0f}"
