"""A failed Router attempt names its deployment safely, from litellm's real callback arguments.

A deployment the user gave no `model_info` id gets litellm's own, a SHA-256 over its parameters
(API key included): the identity is then the deployment's provider/model and API host, never
that hash and never the key. Each case runs in a fresh interpreter: litellm copies its callback
list on first use and never sees a later change to it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.reliability import jobs

pytestmark = pytest.mark.integration

KEY = "sk-canary-router-3b9e"

_CHILD = """
import asyncio
import litellm
from litellm.integrations.custom_logger import CustomLogger
from ondine_otel.hooks.router import deployment_of

deployment = json.loads(sys.argv[1])
info = deployment.pop("model_info", None)  # the entry's, beside litellm_params
seen = []

class Capture(CustomLogger):
    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        seen.append(kwargs)

litellm.callbacks.append(Capture())
failing = {"model_name": "g", "litellm_params": {
    **deployment, "api_key": KEY, "order": 1, "mock_response": "litellm.RateLimitError"}}
if info:
    failing["model_info"] = info
healthy = {"model_name": "g", "litellm_params": {
    "model": "openai/gpt-4o", "api_key": KEY, "order": 2, "mock_response": "ok"}}
router = litellm.Router(model_list=[failing, healthy], num_retries=2)
asyncio.run(router.acompletion(model="g", messages=[{"role": "user", "content": "hi"}]))
failed = [k for k in seen if "RateLimit" in type(k.get("exception")).__name__]
report(
    generated=[str((k["litellm_params"].get("model_info") or {}).get("id")) for k in failed],
    names=[deployment_of(k) for k in failed],
)
"""


def _attempts(deployment: dict[str, Any]) -> dict[str, Any]:
    body = _CHILD.replace("sys.argv[1]", repr(json.dumps(deployment))).replace(
        "KEY", repr(KEY)
    )
    result = jobs.run(body, timeout=120)
    assert result["names"], "no attempt failed"
    return result


def test_without_an_id_the_deployment_is_its_model_and_host() -> None:
    result = _attempts({"model": "openai/gpt-4o-mini", "api_base": "https://eu.llm.example.com/v1"})
    generated = set(result["generated"])
    assert all(len(g) == 64 for g in generated)  # litellm's own: a hash, key included
    names = set(result["names"])
    assert names <= {"openai/gpt-4o-mini@eu.llm.example.com", "openai/gpt-4o-mini"}, names
    assert not any(g in str(n) or KEY in str(n) for g in generated for n in names)


def test_an_id_the_user_gave_is_the_deployment() -> None:
    result = _attempts({"model": "openai/gpt-4o-mini", "model_info": {"id": "eu-primary"}})
    assert set(result["names"]) == {"eu-primary"}
