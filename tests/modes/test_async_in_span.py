"""Issue 14, item 5: a run started inside the caller's span joins that trace and writes the
effective trace id back to `context.trace_id`, for `execute_async()` as for `execute()`.

Today: `execute()` joins; `execute_async()` starts a new trace and keeps ondine's own id
(ondine runs `execute` in `loop.run_in_executor`, which does not carry contextvars).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.modes import shape
from tests.modes.conftest import Telemetry
from tests.modes.offline import litellm_builder, reviews
from tests.spy import ContextSpy


@pytest.mark.parametrize("call", ["execute", "execute_async"])
def test_a_run_inside_a_callers_span_joins_it(
    call: str, telemetry: Telemetry, tmp_path: Path
) -> None:
    tracer = (telemetry.tracer_provider or _global_tracer_provider()).get_tracer("caller")
    builder = litellm_builder(reviews(5), tmp_path)
    if call == "execute_async":
        builder = builder.with_async_execution()
    pipeline = telemetry.build(builder)
    spy = ContextSpy()  # its context is ondine's: trace_id as ondine's logs see it after
    pipeline.add_observer(spy)

    async def run_async() -> int:
        with tracer.start_as_current_span("caller") as caller:
            await pipeline.execute_async()
            return caller.get_span_context().trace_id

    if call == "execute":
        with tracer.start_as_current_span("caller") as caller:
            pipeline.execute()
            caller_trace = caller.get_span_context().trace_id
    else:
        caller_trace = asyncio.run(run_async())

    spans = telemetry.spans()
    run = shape.named(spans, shape.RUN)
    assert len(run) == 1
    assert run[0].context.trace_id == caller_trace
    assert shape.trace_ids(spans) == {caller_trace}
    assert uuid.UUID(spy.context.trace_id).int == caller_trace  # written back for ondine's logs


def _global_tracer_provider() -> Any:
    from opentelemetry import trace

    return trace.get_tracer_provider()
