"""Arize Phoenix, the LLM trace store, on a free loopback port, and reading it back.

Phoenix lives in its own virtualenv (`make phoenix`): its dependencies clash with ondine's
(it moves `openai`, `anthropic` and `jiter` off the versions ondine's `instructor` needs), and
it is a server, so the tests only need its executable. What a test asserts comes from Phoenix's
own API (REST for spans, GraphQL for the costs and token sums it computes), never from what we
sent.
"""

from __future__ import annotations

import json
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .services import Service, _start, find_binary
from .wait import free_port

PHOENIX_VENV = Path(__file__).resolve().parents[2] / ".venv-phoenix"
PROJECT = "default"  # where Phoenix files spans whose resource names no project

_TRACE_QUERY = """
query ($trace: ID!) {
  projects(first: 10) { edges { node { name trace(traceId: $trace) {
    numSpans
    costSummary { total { cost tokens } }
    rootSpan { name spanKind tokenCountTotal cumulativeTokenCountTotal }
  } } } }
}
"""


def find_phoenix() -> str:
    """The `phoenix` executable of `make phoenix`'s virtualenv, else one on PATH."""
    local = PHOENIX_VENV / "bin" / "phoenix"
    if local.exists():
        return str(local)
    return find_binary(
        "phoenix", hint="Arize Phoenix not installed: `make phoenix` (its own virtualenv)"
    )


def start_phoenix(tmp_dir: Path | str, timeout: float = 120.0) -> Service:
    """`phoenix serve` on 127.0.0.1 with a throwaway working dir (its SQLite database), its
    usage telemetry off; ready once `/healthz` answers (first start migrates the database)."""
    binary = find_phoenix()
    workdir = Path(tempfile.mkdtemp(prefix="phoenix-", dir=tmp_dir))
    return _start(
        "phoenix",
        workdir,
        lambda port: [binary, "serve"],
        timeout,
        ready_path="/healthz",
        make_env=lambda port: {
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_WORKING_DIR": str(workdir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        },
    )


def spans(phoenix: Service, trace_id: str) -> list[dict[str, Any]]:
    """Every span Phoenix stored for `trace_id` (32 hex digits), as its REST API returns them."""
    query = urllib.parse.urlencode({"trace_id": trace_id, "limit": 1000})
    url = f"{phoenix.url}/v1/projects/{PROJECT}/spans?{query}"
    with urllib.request.urlopen(url, timeout=10) as response:
        found: list[dict[str, Any]] = json.loads(response.read())["data"]
    return found


def trace_summary(phoenix: Service, trace_id: str) -> dict[str, Any] | None:
    """Phoenix's own view of a trace (GraphQL): span count, cost, root span kind and tokens."""
    body = json.dumps({"query": _TRACE_QUERY, "variables": {"trace": trace_id}}).encode()
    request = urllib.request.Request(
        f"{phoenix.url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise AssertionError(f"Phoenix GraphQL error: {payload['errors']}")
    for edge in payload["data"]["projects"]["edges"]:
        if edge["node"]["name"] == PROJECT:
            trace: dict[str, Any] | None = edge["node"]["trace"]
            return trace
    return None
