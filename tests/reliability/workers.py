"""Job functions for worker processes (importable, so `spawn` children can unpickle them)."""

from __future__ import annotations

import tempfile
from typing import Any

ROWS = 30


def instrument_worker(endpoint: str) -> None:
    """Pool initializer for `spawn` workers: a fresh interpreter must set telemetry up itself."""
    import ondine_otel

    ondine_otel.instrument(
        otlp_endpoint=endpoint, traces_exporter="otlp", metrics_exporter="otlp"
    )


def run_job(index: int) -> dict[str, Any]:
    """One small pipeline run; what ondine says it did, for comparing with the telemetry."""
    import os

    from ondine_otel.demo.data import load_reviews
    from ondine_otel.demo.pipeline import build_demo_pipeline

    df = load_reviews(ROWS + index)  # a different size per job: traces cannot be confused
    result = build_demo_pipeline(
        df, checkpoint_dir=tempfile.mkdtemp(), concurrency=2
    ).execute()
    return {
        "pid": os.getpid(),
        "rows": len(df),
        "cost": float(result.costs.total_cost),
        "tokens": int(result.costs.total_tokens),
    }
