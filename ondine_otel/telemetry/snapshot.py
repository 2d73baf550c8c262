"""Read a run's numbers from an ondine ExecutionContext, whatever its version.

ondine 2.x contexts carry a locked `run_progress`; older ones (the seed document's shape) do not,
and count `last_processed_row` from 0. Every field is optional here, so one reader serves spans,
metrics and checkpoints, and a missing or odd field never raises into ondine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class RunSnapshot:
    """The run's totals at one instant, as plain numbers."""

    rows_total: int
    rows_processed: int
    rows_failed: int
    rows_skipped: int
    cost_usd: float
    tokens_total: int
    tokens_input: int | None
    tokens_output: int | None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _cost(value: Any) -> float:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, TypeError, ValueError):
        return 0.0


def rows_processed(context: Any) -> int:
    """Rows done: ondine's watermark is an index (-1 = none), so the count is one more."""
    last = getattr(context, "last_processed_row", None)
    if last is None:
        return 0
    return max(_int(last, -1) + 1, 0)


def token_split(context: Any) -> tuple[int | None, int | None]:
    """Input/output tokens of the run, where ondine records them; (None, None) if it doesn't.

    The LLM stage's `token_tracking` comes first: ondine updates it together with
    `accumulated_tokens` and restores it from checkpoints, so both stay cumulative across a
    resume (it is also what ondine's own result reports). 2.x's `run_progress` is the fallback;
    it restarts at 0 on resume.
    """
    data = getattr(context, "intermediate_data", None)
    tracking = data.get("token_tracking") if isinstance(data, dict) else None
    if isinstance(tracking, dict):
        return _int(tracking.get("input_tokens")), _int(tracking.get("output_tokens"))
    progress = getattr(context, "run_progress", None)
    if progress is None:
        return None, None
    lock = getattr(progress, "_lock", None)
    if lock is None:
        return _int(getattr(progress, "input_tokens", 0)), _int(
            getattr(progress, "output_tokens", 0)
        )
    with lock:
        return _int(getattr(progress, "input_tokens", 0)), _int(
            getattr(progress, "output_tokens", 0)
        )


def take(context: Any) -> RunSnapshot:
    """Snapshot every number the telemetry reports; never raises for a missing field."""
    tokens_input, tokens_output = token_split(context)
    return RunSnapshot(
        rows_total=_int(getattr(context, "total_rows", 0)),
        rows_processed=rows_processed(context),
        rows_failed=_int(getattr(context, "failed_rows", 0)),
        rows_skipped=_int(getattr(context, "skipped_rows", 0)),
        cost_usd=_cost(getattr(context, "accumulated_cost", 0)),
        tokens_total=_int(getattr(context, "accumulated_tokens", 0)),
        tokens_input=tokens_input,
        tokens_output=tokens_output,
    )


def _both(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


ZERO = RunSnapshot(0, 0, 0, 0, 0.0, 0, None, None)


def plus(a: RunSnapshot, b: RunSnapshot) -> RunSnapshot:
    """Two readings added: a run made of several ondine contexts (a stream's chunks)."""
    return RunSnapshot(
        rows_total=a.rows_total + b.rows_total,
        rows_processed=a.rows_processed + b.rows_processed,
        rows_failed=a.rows_failed + b.rows_failed,
        rows_skipped=a.rows_skipped + b.rows_skipped,
        cost_usd=a.cost_usd + b.cost_usd,
        tokens_total=a.tokens_total + b.tokens_total,
        tokens_input=_both(a.tokens_input, b.tokens_input),
        tokens_output=_both(a.tokens_output, b.tokens_output),
    )
