"""A process that ends after `shutdown()` gave up on a collector that never answers.

`shutdown(timeout)` returns when its time is up and leaves the export still waiting on the
collector. ondine-otel's own exit hook is gone by then (the set-up is shut down), so the
providers it built must not carry the SDK's exit hook either: that one shuts them down a second
time as the process exits, which the SDK reports as a WARNING ("shutdown can only be called
once") on the user's console, after the job has finished cleanly.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability import jobs
from tests.reliability.faults import HangingServer

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

_SECOND_SHUTDOWN = "shutdown can only be called once"

_CHILD = """
import ondine_otel
handle = ondine_otel.instrument(otlp_endpoint={endpoint!r}, otlp_protocol={protocol!r},
                                traces_exporter="otlp", metrics_exporter="otlp")
pipeline = build_demo_pipeline(load_reviews(20), client=OfflineLLMClient(),
                               checkpoint_dir=tempfile.mkdtemp())
result = pipeline.execute()
started = time.perf_counter()
handle.shutdown(timeout=1)
report(shutdown_s=time.perf_counter() - started, rows=result.metrics.processed_rows,
       warnings=warnings(), at=time.time())
"""


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_an_exit_after_a_bounded_shutdown_is_quiet_and_prompt(protocol: str) -> None:
    with HangingServer() as collector:
        process = jobs.start(_CHILD.format(endpoint=collector.endpoint, protocol=protocol))
        done = jobs.finish(process, timeout=60)
        exited = time.time()
        assert collector.connections > 0  # the exports did reach the collector that hangs
    assert done.returncode == 0 and done.result is not None, done.explain()
    assert done.result["rows"] == 20
    assert done.result["shutdown_s"] < 1.5, done.result
    assert _SECOND_SHUTDOWN not in done.stdout + done.stderr, done.explain()
    # The exit waits for nothing of ours: the abandoned exports are daemon threads.
    assert exited - done.result["at"] < 5, done.explain()
