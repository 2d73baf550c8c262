"""`with_observer("otel")` as a process's only entry: its first stream, composed call,
`execute_async()` and Batch-API submit are traced as well as any later one.

ondine creates a named observer only inside each run's `execute()`, so the wrappers around the
call that holds the runs (a stream's chunks, a composer's columns, `execute_async()` in a
caller's span, a submit) were not in place for the first such call of a process: 2 traces and 2
runs for a 2-chunk stream, no composition root, a new trace beside the caller's, no submit
span. The other mode tests
cannot see it: an earlier test in the same session has applied the wrappers. Each case here
runs in a fresh interpreter, with the application's global SDK providers (in memory).
"""

from __future__ import annotations

import pytest

from ondine_otel.telemetry import semconv
from tests.reliability import jobs

pytestmark = pytest.mark.integration

_CHILD = """
import asyncio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

import ondine_otel  # registers "otel"; nothing else is set up
from ondine import PipelineBuilder
from ondine.api.pipeline_composer import PipelineComposer

def builder(df, output="sentiment", source="review"):
    return (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=[source], output_columns=[output])
        .with_prompt("Sentiment of: {" + source + "}")
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-test")
        .with_custom_llm_client(OfflineLLMClient())
        .with_checkpoint_dir(tempfile.mkdtemp())
        .with_observer("otel", {})
    )

mode, caller_trace = sys.argv[1], None
df = load_reviews(20)
if mode == "execute_stream":
    list(builder(df).with_streaming(chunk_size=10).build().execute_stream(chunk_size=10))
elif mode == "execute_stream_async":
    async def consume():
        pipeline = builder(df).build()
        return [chunk async for chunk in pipeline.execute_stream_async(chunk_size=10)]
    asyncio.run(consume())
elif mode == "composer":
    first, second = builder(df, "label"), builder(df, "reason", "label")
    (PipelineComposer(df).add_column("label", first.build())
        .add_column("reason", second.build(), depends_on=["label"]).execute())
elif mode == "submit":  # a Batch-API job, submitted by a process that does nothing else
    from pathlib import Path
    from ondine.orchestration import RunRegistry
    from tests.modes.batch_api_stub import install
    from tests.modes.batch_cli import batch_builder
    state = Path(tempfile.mkdtemp())
    install(state / "api")
    pipeline = batch_builder(state / "ckpt").with_observer("otel", {}).build()
    pipeline.submit(registry=RunRegistry(state / "ckpt"))
else:  # execute_async inside the caller's span
    with trace.get_tracer("caller").start_as_current_span("caller") as caller:
        caller_trace = caller.get_span_context().trace_id
        asyncio.run(builder(df).with_async_execution().build().execute_async())
spans = exporter.get_finished_spans()
data = reader.get_metrics_data()  # None when nothing was recorded at all
runs = [
    point.value
    for rm in (data.resource_metrics if data is not None else ())
    for sm in rm.scope_metrics
    for metric in sm.metrics
    if metric.name == "ondine.runs"
    for point in metric.data.data_points
]
report(
    traces=sorted({s.context.trace_id for s in spans}),
    names=[s.name for s in spans],
    parentless=[s.name for s in spans if s.parent is None],
    runs=sum(runs),
    caller_trace=caller_trace,
)
"""


@pytest.mark.parametrize(
    "mode", ["execute_stream", "execute_stream_async", "composer", "execute_async", "submit"]
)
def test_the_first_call_of_a_process_is_one_trace(mode: str) -> None:
    result = jobs.run(_CHILD.replace("sys.argv[1]", repr(mode)), timeout=180)
    names = result["names"]
    assert len(result["traces"]) == 1, (result["traces"], result["parentless"])
    assert len(result["parentless"]) == 1, result["parentless"]
    if mode.startswith("execute_stream"):
        assert names.count(semconv.SPAN_RUN) == 1 and result["runs"] == 1, result
    if mode == "composer":
        assert result["parentless"] == [semconv.SPAN_COMPOSITION]
        assert names.count(semconv.SPAN_RUN) == 2 and result["runs"] == 2, result
    if mode == "submit":
        assert result["parentless"] == [semconv.SPAN_BATCH_SUBMIT], result
    if mode == "execute_async":
        assert result["parentless"] == ["caller"]
        assert result["traces"] == [result["caller_trace"]]
