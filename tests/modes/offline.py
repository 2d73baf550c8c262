"""Offline LLMs and small frames for the mode tests: ondine's real litellm client with a mock
response, and a client that fails on chosen rows (or on first attempts), both through ondine's
own invocation path. Nothing here imports ondine-otel: the tests use its public entries only.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from ondine import PipelineBuilder
from ondine.adapters.llm_client import LLMClient
from ondine.core.models import LLMResponse
from ondine.core.specifications import LLMSpec
from ondine.utils.retry_handler import NetworkError

FAIL_MARK = "FAIL"
TOKENS_IN = 10
TOKENS_OUT = 2
CALL_COST = Decimal("0.001")


def reviews(rows: int, failing: tuple[int, ...] = ()) -> pd.DataFrame:
    """`rows` short reviews; those at positions in `failing` carry the mark that fails them."""
    return pd.DataFrame(
        {"review": [(FAIL_MARK + " " if i in failing else "") + f"review {i}" for i in range(rows)]}
    )


class RowFailingClient(LLMClient):
    """Fails every prompt holding FAIL_MARK (not retryable) and the first `flaky_attempts`
    attempts of every other prompt (ondine's retryable NetworkError); fixed usage otherwise."""

    def __init__(self, flaky_attempts: int = 0) -> None:
        super().__init__(LLMSpec(provider="openai", model="gpt-4o-mini"))
        self.model = "openai/gpt-4o-mini"
        self.flaky_attempts = flaky_attempts
        self.attempts: dict[str, int] = {}
        self.failed_attempts = 0

    async def ainvoke(self, prompt: str, **kwargs: Any) -> LLMResponse:
        attempt = self.attempts[prompt] = self.attempts.get(prompt, 0) + 1
        if FAIL_MARK in prompt:
            self.failed_attempts += 1
            raise ValueError("the provider refused this row")
        if attempt <= self.flaky_attempts:
            self.failed_attempts += 1
            raise NetworkError("connection reset by the provider")
        return LLMResponse(
            text="positive",
            tokens_in=TOKENS_IN,
            tokens_out=TOKENS_OUT,
            model=self.model,
            cost=CALL_COST,
            latency_ms=1.0,
        )

    def invoke(self, prompt: str, **kwargs: Any) -> LLMResponse:
        return asyncio.run(self.ainvoke(prompt, **kwargs))

    async def structured_invoke_async(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("not used by these tests")

    def structured_invoke(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("not used by these tests")

    def estimate_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


def litellm_builder(
    df: pd.DataFrame, checkpoint_dir: Path, *, output: str = "sentiment", source: str = "review"
) -> Any:
    """A builder on ondine's real litellm client, answered offline by litellm's mock_response."""
    return (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=[source], output_columns=[output])
        .with_prompt(f"Sentiment of: {{{source}}}")
        .with_llm(
            provider="openai",
            model="gpt-4o-mini",
            api_key="sk-test",
            extra_params={"mock_response": "positive"},
        )
        .with_checkpoint_dir(str(checkpoint_dir))
    )


def client_builder(df: pd.DataFrame, client: LLMClient, checkpoint_dir: Path) -> Any:
    """A builder on a custom offline client."""
    return (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=["review"], output_columns=["sentiment"])
        .with_prompt("Sentiment of: {review}")
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-test")
        .with_custom_llm_client(client)
        .with_checkpoint_dir(str(checkpoint_dir))
    )
