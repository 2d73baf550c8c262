"""A dead collector is logged once per kind of failure, not once per batch or retry."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SCRIPT = """
import json, logging, os, tempfile
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import ondine  # hands the root logger to Rich, as in a real job
import ondine_otel
from ondine_otel.demo import build_demo_pipeline, load_reviews
from opentelemetry import trace

records = []
class Count(logging.Handler):
    def emit(self, record):
        if record.name.startswith(("opentelemetry", "ondine_otel")):
            records.append(record.getMessage()[:80])
logging.getLogger().addHandler(Count())

handle = ondine_otel.instrument(otlp_endpoint="http://127.0.0.1:{port}", otlp_timeout=300,
                                metrics_exporter="none")
for index in range(4):
    build_demo_pipeline(load_reviews(5), checkpoint_dir=tempfile.mkdtemp()).execute()
    trace.get_tracer_provider().force_flush(2000)  # one failed export per run
handle.shutdown(timeout=3)
from ondine_otel.runtime import runtime
suppressed = runtime.get().export_logs.suppressed
print("RESULT " + json.dumps({{"records": records, "suppressed": suppressed}}), flush=True)
"""


def test_a_refused_collector_is_logged_once_per_kind_not_per_batch() -> None:
    script = textwrap.dedent(SCRIPT.format(port=_refused_port()))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout[-2000:], done.stderr[-3000:])
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["records"], "the failure was not logged at all"
    assert len(result["records"]) == len(set(result["records"])), result["records"]
    # ondine-otel's one line names the signal and the endpoint; the exporter's own per-batch
    # and per-retry lines are dropped (counted).
    (ours,) = [r for r in result["records"] if r.startswith("ondine-otel: exporting traces")]
    assert "127.0.0.1" in ours
    assert result["suppressed"] >= 3  # four failed exports, each retried: repeats were dropped
