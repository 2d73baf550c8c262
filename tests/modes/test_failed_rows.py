"""Issue 14, item 6: which rows failed and why, as a bounded list of events on the run span
(row index, ondine's reason, a short redacted message; never the row's content).

Today: ondine keeps per-row errors (`result.errors`, `ErrorInfo` with row_index, stage,
error_type, message; at most 1000 per run), ondine-otel only counts them: no event at all.

TODO(issue 14, proposal): event `ondine.row.failed` on the run span with `ondine.row.index`
(the row's position in the user's input, across chunks for a stream), `ondine.row.reason`
(ErrorInfo.error_type: skipped | parse_failure), `ondine.stage.name` (ErrorInfo.stage) and
`ondine.row.error.message` (ErrorInfo.message, redacted, at most 200 characters).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.modes import shape
from tests.modes.conftest import Telemetry
from tests.modes.offline import FAIL_MARK, RowFailingClient, client_builder, reviews

EVENT = "ondine.row.failed"


def _row_events(spans: list[Any]) -> list[dict[str, Any]]:
    return [
        dict(event.attributes or {})
        for span in shape.named(spans, shape.RUN)
        for event in span.events
        if event.name == EVENT
    ]


def test_failed_rows_are_events_on_the_run_span(telemetry: Telemetry, tmp_path: Path) -> None:
    failing = (3, 7)
    pipeline = telemetry.build(client_builder(reviews(12, failing), RowFailingClient(), tmp_path))
    result = pipeline.execute()
    assert sorted(e.row_index for e in result.errors) == list(failing)

    events = _row_events(telemetry.spans())
    assert sorted(e["ondine.row.index"] for e in events) == list(failing)
    by_row = {e.row_index: e for e in result.errors}
    for event in events:
        error = by_row[event["ondine.row.index"]]
        assert event["ondine.row.reason"] == error.error_type
        assert event["ondine.stage.name"] == error.stage
        assert event["ondine.row.error.message"] == error.message[:200]
        assert all(FAIL_MARK not in str(value) for value in event.values())  # no row content


def test_failed_rows_of_a_stream_carry_their_input_position(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    """ondine numbers a chunk's rows from 0 (rows 3 and 14 come back as 3 and 4)."""
    pipeline = telemetry.build(client_builder(reviews(20, (3, 14)), RowFailingClient(), tmp_path))

    async def consume() -> list[Any]:
        return [r async for r in pipeline.execute_stream_async(chunk_size=10)]

    results = asyncio.run(consume())
    assert sorted(e.row_index for r in results for e in r.errors) == [3, 4]
    events = _row_events(telemetry.spans())
    assert sorted(e["ondine.row.index"] for e in events) == [3, 14]
