"""The demo pipeline: sentiment classification of product reviews with the offline client.

One builder shared by the CLI demo, the tests and the benchmarks, so all three exercise the
same ondine configuration.
"""

from __future__ import annotations

from decimal import Decimal
from os import PathLike

import pandas as pd
from ondine import PipelineBuilder
from ondine.api.pipeline import Pipeline
from ondine.core.specifications import LLMSpec

from ondine_otel.demo.client import (
    DEFAULT_INPUT_COST_PER_1K,
    DEFAULT_OUTPUT_COST_PER_1K,
    OfflineLLMClient,
)
from ondine_otel.demo.data import load_reviews

PROMPT = (
    "Classify the sentiment of this product review as positive, negative or neutral. "
    "Answer with one word.\n\nReview: {review}"
)
OUTPUT_COLUMN = "sentiment"


def build_demo_pipeline(
    df: pd.DataFrame | None = None,
    *,
    client: OfflineLLMClient | None = None,
    checkpoint_dir: str | PathLike[str],
    latency_s: float = 0.0,
    failure_rate: float = 0.0,
    error_policy: str = "skip",
    concurrency: int = 8,
    checkpoint_interval: int = 100,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
) -> Pipeline:
    """Build (not run) the sentiment pipeline over ``df`` (default: all bundled reviews).

    ``latency_s`` and ``failure_rate`` configure the offline client created when ``client`` is
    None; pass your own client to keep a handle on its counters and test hooks. The explicit
    prices keep ondine's cost accounting identical to what the client bills.
    """
    if df is None:
        df = load_reviews()
    if client is None:
        spec = LLMSpec(
            provider=provider,
            model=model,
            input_cost_per_1k_tokens=DEFAULT_INPUT_COST_PER_1K,
            output_cost_per_1k_tokens=DEFAULT_OUTPUT_COST_PER_1K,
        )
        client = OfflineLLMClient(spec, latency_s=latency_s, failure_rate=failure_rate)
    in_price: Decimal = client.input_cost_per_1k
    out_price: Decimal = client.output_cost_per_1k
    return (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=["review"], output_columns=[OUTPUT_COLUMN])
        .with_prompt(PROMPT)
        .with_llm(
            provider=provider,
            model=model,
            api_key="sk-offline-demo",
            input_cost_per_1k_tokens=in_price,
            output_cost_per_1k_tokens=out_price,
        )
        .with_custom_llm_client(client)
        .with_checkpoint_dir(str(checkpoint_dir))
        .with_checkpoint_interval(checkpoint_interval)
        .with_error_policy(error_policy)
        .with_concurrency(concurrency)
        .with_progress_mode("none")
        .build()
    )
