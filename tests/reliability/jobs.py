"""Run an ondine job in a fresh interpreter, as a user's process would, and read its report.

OpenTelemetry's global providers, signal handlers, fork and peak RSS are per process, so each
fault scenario runs as its own child. The child collects every WARNING-or-worse record of the
`ondine_otel` and `opentelemetry` loggers (what a user's log would show from the adapter and
the SDK) and prints one `RESULT {json}` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: CA bundle variables `requests` honours; set only by the test that is about them.
_CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

PRELUDE = """
import json, logging, os, sys, tempfile, threading, time
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import ondine  # replaces the root handlers; our collector is added after it
from ondine_otel.demo.client import OfflineLLMClient
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import build_demo_pipeline

LOG_RECORDS = []

class _Collect(logging.Handler):
    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:  # a malformed record must not hide the others
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += " | " + repr(record.exc_info[1])
        LOG_RECORDS.append({"logger": record.name, "level": record.levelname, "text": text})

for _name in ("ondine_otel", "opentelemetry"):
    _handler = _Collect(level=logging.WARNING)
    logging.getLogger(_name).addHandler(_handler)

def warnings():
    return list(LOG_RECORDS)

def frame_of(result):
    data = result.data
    if hasattr(data, "to_pandas"):  # a polars frame
        data = data.to_pandas()
    return data.to_dict(orient="list")

def report(**values):
    sys.stdout.flush()
    print("RESULT " + json.dumps(values, default=str), flush=True)
"""


@dataclass(frozen=True)
class Finished:
    """A child's exit status, its RESULT (if it printed one) and its output for diagnostics."""

    returncode: int
    result: dict[str, Any] | None
    stdout: str
    stderr: str

    def explain(self) -> str:
        out, err = self.stdout[-3000:], self.stderr[-5000:]
        return f"rc={self.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def script(body: str) -> str:
    return PRELUDE + textwrap.dedent(body)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without the developer's OTEL_* / ONDINE_OTEL_* / CA settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "ONDINE_OTEL_")) and k not in _CA_BUNDLE_VARS
    }
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def start(body: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a job script; pair with `finish()` (lets tests signal or overlap children)."""
    return subprocess.Popen(
        [sys.executable, "-c", script(body)],
        env=child_env(env),
        cwd=REPO,  # children import tests.reliability.workers
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> Finished:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"job did not finish in {timeout}s:\n{stderr[-5000:]}") from None
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(lines[-1].removeprefix("RESULT ")) if lines else None
    return Finished(process.returncode, result, stdout, stderr)


def run(body: str, env: dict[str, str] | None = None, timeout: float = 180) -> dict[str, Any]:
    """Run a job script to the end; it must exit 0 and report."""
    done = finish(start(body, env), timeout)
    assert done.returncode == 0 and done.result is not None, done.explain()
    return done.result
