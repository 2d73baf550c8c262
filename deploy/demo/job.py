"""An instrumented ondine batch job, written the way a user writes theirs.

`ondine_otel.instrument()` comes first and reads every destination from the environment
(OTEL_EXPORTER_OTLP_*, OTEL_METRICS_EXPORTER, OTEL_EXPORTER_PROMETHEUS_*,
ONDINE_OTEL_PUSHGATEWAY_URL, ONDINE_OTEL_PIPELINE_NAME, TRACEPARENT ...), so the same file runs
in the compose stack's `demo` service, in the Kubernetes CronJob example and in the alert tests.
The LLM is the offline demo client: no API key, no network.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from decimal import Decimal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import

from ondine.utils import configure_logging

import ondine_otel
from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="rows per run")
    parser.add_argument("--runs", type=int, default=1, help="runs in this process")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="offline LLM latency")
    parser.add_argument(
        "--failure-rate", type=float, default=0.02, help="share of calls that fail (skipped rows)"
    )
    parser.add_argument(
        "--crash-last-after",
        type=int,
        default=None,
        metavar="CALLS",
        help="the last run fails (error policy 'fail') after this many calls",
    )
    parser.add_argument(
        "--budget-usd", type=Decimal, default=None, help="ondine max_budget of every run"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stay up after the last run so a scrape of /metrics sees the final values",
    )
    return parser.parse_args(argv)


def run_once(args: argparse.Namespace, checkpoint_dir: str, crash: bool) -> bool:
    """One pipeline run; True when it succeeded."""
    client = OfflineLLMClient(
        latency_s=args.latency_ms / 1000,
        failure_rate=0.0 if crash else args.failure_rate,
        crash_after=args.crash_last_after if crash else None,
    )
    pipeline = build_demo_pipeline(
        load_reviews(args.rows),
        client=client,
        checkpoint_dir=checkpoint_dir,
        error_policy="fail" if crash else "skip",
        concurrency=4,
    )
    if args.budget_usd is not None:
        # The demo builder returns a built pipeline; a job of your own calls
        # `.with_max_budget(usd)` on its PipelineBuilder instead.
        pipeline.specifications.processing.max_budget = args.budget_usd
    try:
        result = pipeline.execute()
    except Exception as error:  # noqa: BLE001 - a failed run is reported, the job goes on
        print(f"run failed: {error!r}", flush=True)
        return False
    metrics = result.metrics
    print(
        f"run ok: {metrics.total_rows} rows, {metrics.skipped_rows} skipped, "
        f"cost {result.costs.total_cost} USD",
        flush=True,
    )
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # ondine logs every skipped row; the telemetry tells the same story.
    configure_logging(level=os.environ.get("ONDINE_LOG_LEVEL", "ERROR"))
    telemetry = ondine_otel.instrument()
    if telemetry.prometheus_port is not None:
        print(f"metrics on port {telemetry.prometheus_port}", flush=True)
    ok = True
    with tempfile.TemporaryDirectory(prefix="ondine-job-") as checkpoints:
        for index in range(args.runs):
            crash = args.crash_last_after is not None and index == args.runs - 1
            ok = run_once(args, checkpoints, crash) and ok
    if args.linger > 0:
        time.sleep(args.linger)
    telemetry.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
