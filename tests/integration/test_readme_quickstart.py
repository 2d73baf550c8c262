"""The README's Quick start snippets, run as written, each in a fresh interpreter.

A user pastes these; they must work. Each snippet's code block is taken from the README and
run unchanged except for addresses: ``http://localhost:4318`` becomes a live OTLP receiver
on 127.0.0.1 and port ``9464`` a free one, so the test never depends on what else listens on
this machine (and #2's ``pip install`` line is skipped: the test extras install the distro).
The LLM calls are real litellm calls to an OpenAI-compatible server on 127.0.0.1
(``OPENAI_BASE_URL``), so ``.with_llm(provider="openai", model="gpt-4o-mini")`` stays as written.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ondine_otel.telemetry import semconv
from tests.support.openai_server import OpenAIServer
from tests.support.otlp_receiver import OtlpHttpReceiver
from tests.unit.test_readme import section

pytestmark = pytest.mark.integration

README_ENDPOINT = "http://localhost:4318"
README_PORT = "9464"
TITLES = ["USB-C charging cable", "Stainless steel saucepan", "Trail running shoes"]
#: A job that knows nothing of telemetry, for the zero-code snippet's `python job.py`.
PLAIN_JOB = """\
from ondine import PipelineBuilder

pipeline = (
    PipelineBuilder.create()
    .from_csv("products.csv", input_columns=["title"], output_columns=["category"])
    .with_prompt("Which category does this product belong to? {title}")
    .with_llm(provider="openai", model="gpt-4o-mini")
    .build()
)
pipeline.execute()
"""
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def snippet(number: int) -> tuple[str, str]:
    """(language, code) of the first code block under Quick start's heading ``number``."""
    text = section("Quick start")
    parts = re.split(r"^### ", text, flags=re.MULTILINE)
    (part,) = [p for p in parts if p.startswith(f"{number}. ")]
    match = FENCE.search(part)
    assert match is not None, f"Quick start #{number} has no code block"
    return match.group(1), match.group(2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / "products.csv").write_text("title\n" + "\n".join(TITLES) + "\n")
    return tmp_path


def user_env(openai_server: OpenAIServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ONDINE_OTEL_"))}
    env.update(
        OPENAI_BASE_URL=openai_server.base_url,
        OPENAI_API_KEY="sk-test",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        NO_PROXY="127.0.0.1,localhost",
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def localize(code: str, receiver: OtlpHttpReceiver, port: int | None = None) -> str:
    assert README_ENDPOINT in code, "the snippet no longer names the endpoint this test swaps"
    code = code.replace(README_ENDPOINT, receiver.endpoint)
    if port is not None:
        assert README_PORT in code
        code = code.replace(README_PORT, str(port))
    return code


def assert_run_traced(
    receiver: OtlpHttpReceiver, openai_server: OpenAIServer, pipeline: str = "products"
) -> None:
    spans = receiver.wait_for_spans(lambda seen: any(s.name == semconv.SPAN_RUN for s in seen))
    (run_span,) = [s for s in spans if s.name == semconv.SPAN_RUN]
    assert run_span.attributes[semconv.ATTR_PIPELINE_NAME] == pipeline
    chats = [s for s in spans if s.name.startswith(semconv.SPAN_LLM_OPERATION)]
    assert len(chats) == len(TITLES) == openai_server.calls


def test_quick_start_1_instrument(
    job_dir: Path, otlp_http_receiver: OtlpHttpReceiver, openai_server: OpenAIServer
) -> None:
    language, code = snippet(1)
    assert language == "python"
    (job_dir / "job.py").write_text(localize(code, otlp_http_receiver, free_port()))
    run([sys.executable, "job.py"], job_dir, user_env(openai_server))
    assert_run_traced(otlp_http_receiver, openai_server)
    assert any(name.startswith("ondine.") for name in otlp_http_receiver.metric_names())


def test_quick_start_2_zero_code(
    job_dir: Path, otlp_http_receiver: OtlpHttpReceiver, openai_server: OpenAIServer
) -> None:
    language, code = snippet(2)
    assert language == "sh"
    lines = code.splitlines()
    assert lines[0].startswith("pip install opentelemetry-distro")
    (job_dir / "job.py").write_text(PLAIN_JOB)
    command = localize("\n".join(lines[1:]), otlp_http_receiver)
    run(["bash", "-euc", command], job_dir, user_env(openai_server))
    assert_run_traced(otlp_http_receiver, openai_server, pipeline="ondine")  # none named
    assert any(name.startswith("ondine.") for name in otlp_http_receiver.metric_names())


def test_quick_start_3_with_observer(
    job_dir: Path, otlp_http_receiver: OtlpHttpReceiver, openai_server: OpenAIServer
) -> None:
    language, code = snippet(3)
    assert language == "python"
    (job_dir / "job.py").write_text(localize(code, otlp_http_receiver))
    run([sys.executable, "job.py"], job_dir, user_env(openai_server))
    assert_run_traced(otlp_http_receiver, openai_server)


def test_quick_start_4_otel_observer(
    job_dir: Path, otlp_http_receiver: OtlpHttpReceiver, openai_server: OpenAIServer
) -> None:
    language, code = snippet(4)
    assert language == "python"
    port = free_port()
    # After the snippet, read its /metrics the way Prometheus would.
    probe = f"\nimport urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())\n"
    (job_dir / "job.py").write_text(localize(code, otlp_http_receiver, port) + probe)
    out = run([sys.executable, "job.py"], job_dir, user_env(openai_server))
    assert_run_traced(otlp_http_receiver, openai_server)
    assert re.search(
        r'^ondine_rows_processed_total\{[^}]*pipeline="products"[^}]*\} 3\.0$', out, re.M
    ), out
