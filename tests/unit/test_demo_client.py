"""The offline client behaves like a real provider behind ondine's real Pipeline.execute()."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from ondine import PipelineBuilder
from ondine.core.specifications import LLMSpec
from ondine.observability.base import PipelineObserver
from ondine.observability.events import LLMCallEvent
from ondine.observability.registry import observer
from pydantic import BaseModel

from ondine_otel.demo import (
    OfflineLLMClient,
    SimulatedLLMError,
    build_demo_pipeline,
    load_reviews,
)
from ondine_otel.demo.pipeline import OUTPUT_COLUMN, PROMPT

COLLECTOR = f"demo-client-test-collector-{uuid.uuid4().hex[:8]}"


@observer(COLLECTOR)
class _Collector(PipelineObserver):
    """Records llm_call events per sink key, since ondine builds the instance itself."""

    sinks: ClassVar[dict[str, list[LLMCallEvent]]] = {}

    def on_llm_call(self, event: LLMCallEvent) -> None:
        self.sinks.setdefault(self.config["sink"], []).append(event)


def _sentiments(result: Any) -> list[Any]:
    frame: pd.DataFrame = result.to_pandas()
    return list(frame[OUTPUT_COLUMN])


def test_answers_and_cost_are_deterministic(tmp_path: Path) -> None:
    df = load_reviews(60)
    first = build_demo_pipeline(df, checkpoint_dir=tmp_path / "a").execute()
    second = build_demo_pipeline(df, checkpoint_dir=tmp_path / "b", concurrency=3).execute()
    assert _sentiments(first) == _sentiments(second)
    assert set(_sentiments(first)) <= {"positive", "negative", "neutral"}
    assert len(set(_sentiments(first))) > 1
    assert first.costs.total_cost == second.costs.total_cost > 0


def test_cost_is_the_sum_of_per_call_costs_and_events_match_the_real_client(
    tmp_path: Path,
) -> None:
    df = load_reviews(40)
    client = OfflineLLMClient(LLMSpec(provider="openai", model="gpt-4o-mini", temperature=0.0))
    sink = uuid.uuid4().hex
    pipeline = (
        PipelineBuilder.create()
        .from_dataframe(df, input_columns=["review"], output_columns=["sentiment"])
        .with_prompt(PROMPT)
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-test")
        .with_custom_llm_client(client)
        .with_checkpoint_dir(str(tmp_path))
        .with_concurrency(4)
        .with_observer(COLLECTOR, {"sink": sink})
        .build()
    )
    result = pipeline.execute()

    events = _Collector.sinks[sink]
    assert len(events) == len(df) == client.success_count == client.call_count
    assert sum((e.cost for e in events), Decimal(0)) == Decimal(result.costs.total_cost)
    event = events[0]
    assert event.model == "openai/gpt-4o-mini"
    assert event.provider == "openai"
    assert event.stage_name == "LLMInvocation"
    assert event.pipeline_id == uuid.UUID(int=0) and event.row_index == 0
    assert event.completion in {"positive", "negative", "neutral"}
    assert event.prompt.startswith("Classify the sentiment")
    assert event.total_tokens == event.input_tokens + event.output_tokens
    assert event.input_tokens > 1 and event.output_tokens >= 1
    # gpt-4o-mini prices apply when the spec names none.
    expected = event.input_tokens * Decimal("0.00015") + event.output_tokens * Decimal("0.0006")
    assert event.cost == expected / 1000


def test_spec_prices_are_used_when_given() -> None:
    spec = LLMSpec(
        provider="openai",
        model="custom",
        input_cost_per_1k_tokens=Decimal("1"),
        output_cost_per_1k_tokens=Decimal("2"),
    )
    response = OfflineLLMClient(spec).invoke("I love it, great and sturdy")
    assert response.model == "openai/custom"
    assert response.text == "positive"
    assert response.cost == (response.tokens_in * 1 + response.tokens_out * 2) / Decimal(1000)


def test_failure_rate_under_skip_policy_skips_exactly_the_failing_rows(tmp_path: Path) -> None:
    client = OfflineLLMClient(failure_rate=0.2)
    result = build_demo_pipeline(
        load_reviews(100), client=client, checkpoint_dir=tmp_path, error_policy="skip"
    ).execute()
    failures = client.call_count - client.success_count
    assert 5 < failures < 40
    assert result.metrics.skipped_rows == failures
    assert sum(pd.isna(v) for v in _sentiments(result)) == failures


def test_failures_hit_the_same_prompts_every_time() -> None:
    client = OfflineLLMClient(failure_rate=0.5)
    prompts = [f"review number {i}" for i in range(50)]

    def outcome(prompt: str) -> bool:
        try:
            client.invoke(prompt)
        except SimulatedLLMError:
            return False
        return True

    assert [outcome(p) for p in prompts] == [outcome(p) for p in prompts]


def test_crash_after_with_fail_policy_raises_out_of_execute(tmp_path: Path) -> None:
    client = OfflineLLMClient(crash_after=10)
    pipeline = build_demo_pipeline(
        load_reviews(50), client=client, checkpoint_dir=tmp_path, error_policy="fail"
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.execute()
    assert client.success_count == 10


def test_interrupt_after_raises_keyboard_interrupt_out_of_execute(tmp_path: Path) -> None:
    client = OfflineLLMClient(interrupt_after=10)
    pipeline = build_demo_pipeline(load_reviews(50), client=client, checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        pipeline.execute()
    assert client.success_count == 10


def test_limits_hold_under_concurrent_threads() -> None:
    client = OfflineLLMClient(crash_after=25)

    def call(i: int) -> bool:
        try:
            client.invoke(f"prompt {i}")
        except RuntimeError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(200)))
    assert sum(outcomes) == client.success_count == 25
    assert client.call_count == 200


def test_latency_path_runs_through_ondine(tmp_path: Path) -> None:
    client = OfflineLLMClient(latency_s=0.001)
    result = build_demo_pipeline(load_reviews(20), client=client, checkpoint_dir=tmp_path).execute()
    assert client.success_count == 20
    assert result.metrics.processed_rows == 20
    assert client.invoke("slow one").latency_ms >= 1


def test_structured_invoke_fills_the_schema() -> None:
    class Verdict(BaseModel):
        sentiment: str

    response = OfflineLLMClient().structured_invoke("terrible, it broke", Verdict)
    assert response.structured_result == Verdict(sentiment="negative")
    assert Verdict.model_validate_json(response.text).sentiment == "negative"


def test_token_estimate_never_zero() -> None:
    client = OfflineLLMClient()
    assert client.estimate_tokens("") == 1
    assert client.estimate_tokens("one two three four five six seven eight nine ten") == 13


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        OfflineLLMClient(failure_rate=1.5)
    with pytest.raises(ValueError):
        OfflineLLMClient(latency_s=-1)


def test_load_reviews() -> None:
    everything = load_reviews()
    assert list(everything.columns) == ["id", "review"]
    assert 250 <= len(everything) <= 350
    assert everything["id"].is_unique
    assert everything["review"].str.len().min() > 10
    assert load_reviews(5).equals(everything.head(5))
    many = load_reviews(len(everything) * 2 + 7)
    assert len(many) == len(everything) * 2 + 7
    assert many["id"].is_unique


def test_structured_output_through_ondine(tmp_path: Path) -> None:
    class Verdict(BaseModel):
        sentiment: str

    client = OfflineLLMClient(latency_s=0.001)
    pipeline = (
        PipelineBuilder.create()
        .from_dataframe(load_reviews(10), input_columns=["review"], output_columns=["sentiment"])
        .with_prompt(PROMPT)
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-test")
        .with_custom_llm_client(client)
        .with_structured_output(Verdict)
        .with_checkpoint_dir(str(tmp_path))
        .build()
    )
    result = pipeline.execute()
    assert client.success_count == 10
    assert set(_sentiments(result)) <= {"positive", "negative", "neutral"}
