"""Issue 14, item 3: every failed provider attempt is visible, as an ERROR `chat` span and in
`gen_ai.client.operation.duration` with `error.type`, named by a safe deployment identity; the
successful attempt stays the call's span. Ground truth for the attempts is litellm's own
callback API (a CustomLogger), which sees each deployment attempt of its Router.

Today: a router with a deployment answering 429 and a healthy one gives 20 OK chat spans and
0 ERROR spans / 0 `error.type` points (the failover happens inside `Router.acompletion`).
ondine's own retries (`with_max_retries`) are visible already (each retry calls the client).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from ondine import PipelineBuilder

from tests.modes import shape
from tests.modes.conftest import Telemetry
from tests.modes.offline import RowFailingClient, client_builder, reviews
from tests.support.wait import wait_until

ROWS = 20
SECRET_BAD, SECRET_GOOD = "sk-bad-0123456789abcdef", "sk-good-0123456789abcdef"


def _model_list(failing_id: str) -> list[dict[str, Any]]:
    """The 429 deployment first (`order`), so every call tries it until litellm cools it down.
    Its id is new per test: litellm keeps cooldowns per deployment id for the whole process."""
    return [
        {
            "model_name": "gpt-4o-mini",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_key": SECRET_BAD,
                "mock_response": "litellm.RateLimitError",
                "order": 1,
            },
            "model_info": {"id": failing_id},
        },
        {
            "model_name": "gpt-4o-mini",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_key": SECRET_GOOD,
                "mock_response": "positive",
                "order": 2,
            },
            "model_info": {"id": "healthy-" + failing_id},
        },
    ]


class _Attempts(CustomLogger):
    """Every failed deployment attempt, as litellm reports it (model_info id, error class)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[tuple[str, str]] = []

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        model_info = (kwargs.get("litellm_params") or {}).get("model_info") or {}
        self.failed.append((str(model_info.get("id")), type(kwargs.get("exception")).__name__))


_ATTEMPTS = _Attempts()


@pytest.fixture
def attempts() -> Iterator[_Attempts]:
    """One logger per process: litellm copies `litellm.callbacks` into its own lists on first
    use and never sees later additions or removals."""
    if _ATTEMPTS not in litellm.callbacks:
        litellm.callbacks.append(_ATTEMPTS)
    _ATTEMPTS.failed.clear()
    yield _ATTEMPTS


def _router_pipeline(telemetry: Telemetry, tmp_path: Path, failing_id: str) -> Any:
    builder = (
        PipelineBuilder.create()
        .from_dataframe(reviews(ROWS), input_columns=["review"], output_columns=["sentiment"])
        .with_prompt("Sentiment of: {review}")
        .with_router(model_list=_model_list(failing_id), num_retries=3)
        .with_checkpoint_dir(str(tmp_path))
    )
    return telemetry.build(builder)


def test_router_failover_attempts_are_error_spans_named_by_deployment(
    telemetry: Telemetry, attempts: _Attempts, tmp_path: Path
) -> None:
    failing_id = "eu-429-" + uuid.uuid4().hex[:8]
    result = _router_pipeline(telemetry, tmp_path, failing_id).execute()
    assert result.metrics.processed_rows == ROWS and not result.errors
    wait_until(lambda: len(attempts.failed) > 0, timeout=5, message="no failover happened")

    def errors() -> list[Any]:
        return shape.failed(shape.chats(telemetry.spans()))

    wait_until(
        lambda: len(errors()) == len(attempts.failed),
        timeout=5,
        message=lambda: f"{len(errors())} ERROR chat spans, litellm saw {len(attempts.failed)}",
    )
    spans = telemetry.spans()
    assert len(shape.chats(spans)) - len(errors()) == ROWS  # one successful span per call
    for span in errors():
        attributes = span.attributes or {}
        assert attributes.get("error.type") == "RateLimitError"
        # TODO(issue 14, proposal): the deployment's safe identity: litellm's model_info id.
        assert attributes.get("ondine.llm.deployment") == failing_id
        assert shape.parent(spans, span).name == shape.LLM_STAGE  # type: ignore[union-attr]
    assert telemetry.metric(
        "gen_ai.client.operation.duration", **{"error.type": "RateLimitError"}
    ) == len(attempts.failed)
    for span in spans:  # never a key, anywhere
        text = json.dumps(dict(span.attributes or {}), default=str)
        assert SECRET_BAD not in text and SECRET_GOOD not in text


def test_ondine_retries_are_error_spans_before_the_successful_one(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    client = RowFailingClient(flaky_attempts=1)
    pipeline = telemetry.build(client_builder(reviews(10), client, tmp_path).with_max_retries(2))
    result = pipeline.execute()
    assert result.metrics.processed_rows == 10 and not result.errors

    spans = telemetry.spans()
    assert len(shape.failed(shape.chats(spans))) == client.failed_attempts == 10
    assert len(shape.chats(spans)) == 20
    assert (
        telemetry.metric("gen_ai.client.operation.duration", **{"error.type": "NetworkError"}) == 10
    )
