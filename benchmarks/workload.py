"""The jobs being measured: the demo sentiment pipeline on the offline client or on litellm.

Two clients. ``offline``: ondine-otel's ``OfflineLLMClient`` (instant, or 0.5-9.5 ms calls),
so ondine's own per-row work is all there is besides telemetry. ``litellm``: ondine's real
LiteLLM client driven offline with ``mock_response``: the path the litellm instrumentations
(OpenInference, OpenLLMetry) hook, so every tool can be compared on the same calls. The
pipeline is returned as a builder step so a variant can add its ``with_observer``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ondine import PipelineBuilder
from ondine.api.pipeline import Pipeline

from ondine_otel.demo import OfflineLLMClient, load_reviews
from ondine_otel.demo.pipeline import OUTPUT_COLUMN, PROMPT

CONCURRENCY = 8
CHECKPOINT_INTERVAL = 100  # as the demo pipeline
LITELLM_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Workload:
    """What one run executes: which client, how many rows, how slow the calls are."""

    client: str  # "offline" | "litellm"
    rows: int
    latency_s: float = 0.0
    latency_jitter: float = 0.0
    stream_chunk: int | None = None  # rows per chunk: run with execute_stream()

    def describe(self) -> str:
        if self.stream_chunk is not None:
            return (
                f"{self.rows:,} rows streamed (execute_stream(), {self.stream_chunk:,}-row "
                "chunks), offline client answering at once"
            )
        if self.client == "litellm":
            return f"{self.rows:,} rows, ondine's LiteLLM client with mock_response"
        if not self.latency_s:
            return f"{self.rows:,} rows, offline client answering at once"
        low = self.latency_s * (1 - self.latency_jitter) * 1000
        high = self.latency_s * (1 + self.latency_jitter) * 1000
        return f"{self.rows:,} rows, offline client, calls of {low:g}-{high:g} ms"


BuilderStep = Callable[[PipelineBuilder], PipelineBuilder]


def execute(pipeline: Pipeline, workload: Workload) -> tuple[str, int]:
    """Run the pipeline as the workload says (streamed: every chunk consumed and dropped);
    ondine's total cost and processed rows."""
    if workload.stream_chunk is None:
        result = pipeline.execute()
        return str(result.costs.total_cost), result.metrics.processed_rows
    cost, rows = Decimal(0), 0
    for chunk in pipeline.execute_stream():
        cost += chunk.costs.total_cost
        rows += chunk.metrics.processed_rows
    return str(cost), rows


def build_pipeline(
    workload: Workload,
    checkpoint_dir: str,
    *,
    steps: Sequence[BuilderStep] = (),
    client: OfflineLLMClient | None = None,
) -> Pipeline:
    """The sentiment pipeline over ``workload.rows`` reviews (8 concurrent calls, skip errors)."""
    builder = (
        PipelineBuilder.create()
        .from_dataframe(
            load_reviews(workload.rows), input_columns=["review"], output_columns=[OUTPUT_COLUMN]
        )
        .with_prompt(PROMPT)
    )
    if workload.client == "litellm":
        builder = builder.with_llm(
            provider="openai",
            model=LITELLM_MODEL,
            api_key="sk-test",
            extra_params={"mock_response": "positive"},
        )
    else:
        if client is None:
            client = OfflineLLMClient(
                latency_s=workload.latency_s, latency_jitter=workload.latency_jitter
            )
        builder = builder.with_llm(
            provider="openai",
            model=LITELLM_MODEL,
            api_key="sk-offline-demo",
            input_cost_per_1k_tokens=client.input_cost_per_1k,
            output_cost_per_1k_tokens=client.output_cost_per_1k,
        ).with_custom_llm_client(client)
    builder = (
        builder.with_checkpoint_dir(checkpoint_dir)
        .with_checkpoint_interval(CHECKPOINT_INTERVAL)
        .with_error_policy("skip")
        .with_concurrency(CONCURRENCY)
        .with_progress_mode("none")
    )
    if workload.stream_chunk is not None:
        builder = builder.with_streaming(chunk_size=workload.stream_chunk)
    for step in steps:
        builder = step(builder)
    return builder.build()


class GatedClient(OfflineLLMClient):
    """An offline client whose calls wait for a gate: runs that stay active for as long as
    the benchmark needs them (real ondine runs, blocked inside their LLM stage)."""

    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.waiting = threading.Event()

    async def ainvoke(self, prompt: str, **kwargs: Any) -> Any:
        self.waiting.set()
        await asyncio.to_thread(self.gate.wait)
        return await super().ainvoke(prompt, **kwargs)
