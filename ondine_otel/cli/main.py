"""The ``ondine-otel`` command line.

``demo`` shows what the instrumentation produces without an API key, network or tracing
backend: it runs the offline sentiment pipeline under the instrumentor, serves its Prometheus
metrics meanwhile and prints the trace and a metrics summary.
Each subcommand lives in its own ``_add_*_parser`` / ``_run_*`` pair.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ondine_otel.cli.check import add_check_parser
from ondine_otel.cli.ops import add_ops_parser
from ondine_otel.version import __version__

if TYPE_CHECKING:  # the demo imports these lazily; the other commands need neither
    from opentelemetry.sdk.trace import ReadableSpan
    from rich.console import Console

    from ondine_otel.export.providers import PrometheusEndpoint

DEMO_SERVICE_NAME = "ondine-otel-demo"
DEMO_METRICS_HOST = "127.0.0.1"
DEMO_METRICS_PORT = 9464  # the OpenTelemetry Prometheus exporter's usual port
_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ondine-otel`` script; returns the exit code instead of exiting."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 1
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    code: int = args.handler(args)
    return code


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ondine-otel", description="OpenTelemetry for ondine LLM batch pipelines."
    )
    parser.add_argument("--version", action="version", version=f"ondine-otel {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_demo_parser(subparsers)
    add_check_parser(subparsers)
    add_ops_parser(subparsers)
    return parser


# --- demo --------------------------------------------------------------------------------


def _add_demo_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run an offline sentiment pipeline under the instrumentor and print its trace",
        description=(
            "Classify bundled product reviews with an embedded offline LLM, trace the run and "
            "print the span tree. If OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_ variant) is "
            "set, the spans are also exported there."
        ),
    )
    demo.add_argument("--rows", type=_positive_int, default=None, help="rows (default: all)")
    demo.add_argument(
        "--latency-ms", type=_non_negative_float, default=5.0, help="simulated LLM latency"
    )
    demo.add_argument(
        "--failure-rate",
        type=_fraction,
        default=0.02,
        help="fraction of calls that fail; those rows are skipped (default: 0.02)",
    )
    demo.add_argument(
        "--checkpoint-dir", type=Path, default=None, help="default: a temporary directory"
    )
    demo.add_argument(
        "--metrics-port",
        type=_metrics_port,
        default=DEMO_METRICS_PORT,
        help=f"serve Prometheus /metrics on 127.0.0.1:PORT during the run (default: "
        f"{DEMO_METRICS_PORT}); with 0, or if PORT is busy, the OS picks a free port",
    )
    demo.add_argument(
        "--keep-serving",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="keep /metrics up this long after the run, e.g. to curl it (default: 0)",
    )
    demo.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    """Run the demo pipeline instrumented, then print a summary line, the trace tree and the
    metrics summary; /metrics is served meanwhile so the live counters can be scraped.

    It builds its own providers rather than calling `ondine_otel.instrument()`, which would
    install them globally in the caller's process (the tests run `main()` in-process).
    """
    # Imported here: only the demo needs ondine, the SDK exporters and rich.
    from ondine.utils import configure_logging
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from rich.console import Console

    from ondine_otel.cli.console import print_metrics_summary, print_trace
    from ondine_otel.demo import build_demo_pipeline, load_reviews
    from ondine_otel.demo.pipeline import OUTPUT_COLUMN
    from ondine_otel.export.providers import PrometheusEndpoint
    from ondine_otel.instrumentor import OndineInstrumentor
    from ondine_otel.telemetry.instruments import metric_views

    # ondine logs every skipped row at INFO/WARNING to stdout; the trace tells the same story.
    configure_logging(level=os.environ.get("ONDINE_LOG_LEVEL", "ERROR"))
    console = Console()
    service = os.environ.get("OTEL_SERVICE_NAME", DEMO_SERVICE_NAME)
    resource = Resource.create({SERVICE_NAME: service})
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otlp = next((os.environ[v] for v in _OTLP_ENDPOINT_VARS if os.environ.get(v)), None)
    if otlp is not None:
        from ondine_otel.export.providers import span_processors_from_env

        for processor in span_processors_from_env():
            provider.add_span_processor(processor)

    # One set of instruments, two readers: Prometheus for scrapes, in-memory for the summary.
    endpoint = PrometheusEndpoint()
    metric_memory = InMemoryMetricReader()
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[endpoint.reader, metric_memory], views=metric_views()
    )
    url = _serve_demo_metrics(endpoint, args.metrics_port, console, args.keep_serving)

    df = load_reviews(args.rows)
    instrumentor = OndineInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=meter_provider)
    started = time.perf_counter()
    error: Exception | None = None
    try:
        with ExitStack() as stack:
            checkpoint_dir = args.checkpoint_dir or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="ondine-otel-demo-")
            )
            pipeline = build_demo_pipeline(
                df,
                checkpoint_dir=checkpoint_dir,
                latency_s=args.latency_ms / 1000,
                failure_rate=args.failure_rate,
            )
            result = pipeline.execute()
    except Exception as raised:  # noqa: BLE001 - report any failure, with its trace
        error = raised
    finally:
        instrumentor.uninstrument()
    elapsed = time.perf_counter() - started
    provider.force_flush()

    spans = memory.get_finished_spans()
    if error is None:
        stats = result.metrics
        cost = Decimal(result.costs.total_cost)
        failed = f", {stats.failed_rows} failed" if stats.failed_rows else ""
        console.print(
            f"[bold]ondine-otel demo[/]: {stats.total_rows} rows "
            f"({stats.skipped_rows} skipped{failed}) · cost ${cost:.6f} · {elapsed:.2f} s",
            highlight=False,
        )
        counts = result.to_pandas()[OUTPUT_COLUMN].value_counts()
        console.print(
            "sentiment: " + " · ".join(f"{label} {n}" for label, n in counts.items()),
            highlight=False,
        )
    else:
        console.print(
            f"[bold red]ondine-otel demo failed[/] after {elapsed:.2f} s: {error!r}",
            highlight=False,
        )
    if otlp is not None:
        console.print(f"spans also exported to {otlp}", highlight=False)
    print_trace(spans, console)
    _explain_dropped_spans(spans, console)
    try:
        print_metrics_summary(metric_memory.get_metrics_data(), console)
        _keep_serving(args.keep_serving, url, console)
    finally:
        endpoint.close()
        meter_provider.shutdown()
        provider.shutdown()
    return 0 if error is None else 1


def _serve_demo_metrics(
    endpoint: PrometheusEndpoint, port: int, console: Console, keep_serving: float
) -> str:
    """Serve /metrics and print its URL and how long it stays up; a busy port falls back to
    one the OS picks.

    Falling back (rather than failing) keeps the demo working next to a real exporter or
    another demo already on the default port. The demo's run takes well under a second, so the
    URL line says up front that the endpoint closes with it unless ``--keep-serving`` is given.
    """
    try:
        bound = endpoint.serve(DEMO_METRICS_HOST, port)
    except OSError as error:
        bound = endpoint.serve(DEMO_METRICS_HOST, 0)
        console.print(
            f"port {port} is busy ({error.strerror or error}); using port {bound} instead",
            highlight=False,
        )
    url = f"http://{DEMO_METRICS_HOST}:{bound}/metrics"
    lasts = (
        f"and for {keep_serving:g} s after the run"
        if keep_serving > 0
        else "only while the demo runs: add --keep-serving SECONDS to curl it afterwards"
    )
    console.print(f"Prometheus metrics: {url} ({lasts})", highlight=False)
    return url


def _explain_dropped_spans(spans: Sequence[ReadableSpan], console: Console) -> None:
    """Say what a run span's ``ondine.llm_spans.dropped`` means: calls without a chat span of
    their own under the span policy, all still counted in the metrics."""
    from ondine_otel.config import BY_NAME, DEFAULTS, ConfigError, TelemetryConfig
    from ondine_otel.telemetry import semconv

    for span in spans:
        dropped = (span.attributes or {}).get(semconv.ATTR_LLM_SPANS_DROPPED)
        if span.name != semconv.SPAN_RUN or not dropped:
            continue
        try:
            config = TelemetryConfig.from_settings()
            limit, rate = config.llm_span_limit, config.llm_span_rate
        except ConfigError:
            limit, rate = DEFAULTS["llm_span_limit"], DEFAULTS["llm_span_rate"]
        console.print(
            f"{semconv.ATTR_LLM_SPANS_DROPPED}={dropped}: that many LLM calls got no chat span "
            f"of their own. A run traces its first {limit} calls "
            f"({BY_NAME['llm_span_limit'].env}), then failed calls and {rate:g} a second "
            f"({BY_NAME['llm_span_rate'].env}), so a long run's trace stays small; every call "
            "is still counted in the metrics below.",
            highlight=False,
        )


def _keep_serving(seconds: float, url: str, console: Console) -> None:
    """Leave /metrics up after the run so it can be scraped; Ctrl-C ends the wait early."""
    if seconds <= 0:
        console.print(
            f"{url} closes now, with the demo; `ondine-otel demo --keep-serving 60` keeps it "
            "up for a minute after the run",
            highlight=False,
        )
        return
    console.print(f"serving {url} for {seconds:g} s more (Ctrl-C to stop)", highlight=False)
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        console.print("stopped serving metrics", highlight=False)


def _metrics_port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within [0, 65535], got {text}")
    return value


# --- argument types ----------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
