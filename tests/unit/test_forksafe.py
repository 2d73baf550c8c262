"""A worker forked while another thread holds a metrics lock must not hang in the child."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from ondine_otel.runtime import runtime
from ondine_otel.telemetry.call_record import CallRecord
from ondine_otel.telemetry.metrics import OndineMetrics


def _record_in_child(metrics: OndineMetrics) -> None:
    for sink in metrics.call_sinks:
        sink("openai", "gpt-4o-mini", None)([CallRecord(0, 10_000_000, "gpt-4o-mini", 3, 1)])
    assert metrics.calls.snapshot()
    assert metrics.reading() is not None


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform"
)
def test_a_child_forked_while_a_lock_is_held_records_calls() -> None:
    metrics = runtime.get().metrics_for(MeterProvider())
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with metrics.calls._lock, metrics._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(5)
    child = multiprocessing.get_context("fork").Process(target=_record_in_child, args=(metrics,))
    child.start()
    child.join(timeout=20)
    release.set()
    holder.join(timeout=5)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
