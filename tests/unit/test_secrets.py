"""No secret travels in ondine's pipeline specification.

ondine stores every `with_observer(name, config)` in `specifications.metadata["observers"]` and
sends it in its `pipeline_start` event to every observer (its Langfuse observer forwards it).
So `with_observer("otel", ...)` refuses secret settings, naming the variable to use instead, and
`TelemetryConfig.to_dict()` (the README's way to build that dict) leaves them out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from ondine import PipelineBuilder

import ondine_otel  # noqa: F401 - registers "otel" and its with_observer validation
from ondine_otel.config import SETTINGS, ConfigError, TelemetryConfig, observer_config
from tests.support.otlp_receiver import OtlpHttpReceiver

SECRETS = {s.name: s.env for s in SETTINGS if s.secret}
CANARY = {
    "otlp_headers": "authorization=Bearer canary-otlp-1f2e3d",
    "otlp_traces_headers": {"x-api-key": "canary-traces-4c5b6a"},
    "otlp_metrics_headers": "x-api-key=canary-metrics-7d8e9f",
    "pushgateway_username": "canary-user-0a1b2c",
    "pushgateway_password": "canary-password-3d4e5f",
}


def test_every_secret_setting_has_a_canary() -> None:
    assert set(SECRETS) == set(CANARY)


@pytest.mark.parametrize("name", sorted(CANARY))
def test_observer_config_refuses_a_secret_and_names_the_variable(name: str) -> None:
    """`observer_config` is what validates a with_observer("otel", ...) dict."""
    with pytest.raises(ConfigError) as caught:
        observer_config({"pipeline_name": "p", name: CANARY[name]})
    message = str(caught.value)
    assert caught.value.setting == name
    assert SECRETS[name] in message and "environment variable" in message
    assert "canary" not in message and "canary" not in repr(caught.value.value)


def test_to_dict_of_a_config_with_secrets_is_a_valid_observer_config() -> None:
    config = TelemetryConfig.from_settings(
        environ={},
        pipeline_name="p",
        otlp_endpoint="http://127.0.0.1:9",
        otlp_headers=CANARY["otlp_headers"],
    )
    data = config.to_dict()
    assert "canary" not in json.dumps(data)
    assert observer_config(data).otlp_endpoint == "http://127.0.0.1:9"
    PipelineBuilder.create().with_observer("otel", data)  # accepted as it is


_JOB = """
import json, os, sys, tempfile
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import ondine_otel
from ondine import PipelineBuilder
from ondine.observability.base import PipelineObserver
from ondine.observability.registry import observer
from ondine_otel.demo.client import OfflineLLMClient
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import PROMPT
from ondine_otel.entries.instrument import current

seen = []

@observer("secret-spy")
class Spy(PipelineObserver):
    def on_pipeline_start(self, event):
        seen.append({"config": event.config, "metadata": event.metadata})

    def on_llm_call(self, event):
        pass

config = json.loads(sys.argv[1])
try:
    builder = PipelineBuilder.create().with_observer("otel", config)
except ondine_otel.ConfigError as refused:  # refused while the pipeline is built
    print("RESULT " + json.dumps({"refused": str(refused)}))
    sys.exit(0)
pipeline = (
    builder
    .from_dataframe(load_reviews(3), input_columns=["review"], output_columns=["sentiment"])
    .with_prompt(PROMPT)
    .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-offline")
    .with_custom_llm_client(OfflineLLMClient())
    .with_checkpoint_dir(tempfile.mkdtemp())
    .with_observer("secret-spy", {})
    .build()
)
pipeline.execute()
current().shutdown(timeout=5)
print("RESULT " + json.dumps(
    {"metadata": pipeline.specifications.metadata, "events": seen}, default=str))
"""


def _run_job(config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_JOB), json.dumps(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def _assert_spec_clean(result: dict[str, Any], config: dict[str, Any]) -> None:
    assert result["events"], "the spy observer saw no pipeline_start event"
    assert any(entry[0] == "otel" for entry in result["metadata"]["observers"])
    for where in ("metadata", "events"):
        assert "canary" not in json.dumps(result[where]), where


def test_a_run_with_secrets_in_the_environment_keeps_them_out_of_the_spec() -> None:
    """The secret reaches the collector from the environment, and nothing else sees it."""
    with OtlpHttpReceiver() as receiver:
        config = {"pipeline_name": "secrets", "otlp_endpoint": receiver.endpoint}
        result = _run_job(
            config, {"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20canary-otlp-1f2e3d"}
        )
        requests = receiver.requests("traces")
    assert requests and {r.headers.get("authorization") for r in requests} == {
        "Bearer canary-otlp-1f2e3d"
    }
    _assert_spec_clean(result, config)


@pytest.mark.parametrize("name", ["otlp_headers", "pushgateway_password"])
def test_a_secret_given_to_with_observer_never_reaches_the_spec(name: str) -> None:
    """Refused while the pipeline is built (naming the variable), or at least never stored."""
    with OtlpHttpReceiver() as receiver:
        config = {"pipeline_name": "secrets", "otlp_endpoint": receiver.endpoint}
        result = _run_job({**config, name: CANARY[name]}, {})
    if "refused" in result:
        assert SECRETS[name] in result["refused"] and "canary" not in result["refused"]
    else:
        _assert_spec_clean(result, config)
