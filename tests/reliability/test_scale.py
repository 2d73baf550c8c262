"""100,000 rows with per-call spans on: bounded spans, adapter memory flat in rows.

Two children, one bare and one instrumented (traces and metrics over OTLP to a receiver here),
each run 10,000 rows and then 100,000 rows and report their peak RSS after each
(`resource.getrusage`, which is what a container's memory limit sees). The adapter's memory
is the instrumented child's growth from 10k to 100k rows minus the bare child's growth.
"""

from __future__ import annotations

import pytest

from ondine_otel.telemetry import semconv
from tests.reliability import jobs
from tests.reliability.conftest import Figures
from tests.support.otlp_receiver import OtlpHttpReceiver

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SMALL, LARGE = 10_000, 100_000
LLM_SPAN_LIMIT = 100  # the default: every call up to N gets a span
LLM_SPAN_RATE = 1.0  # the default: spans per second after that

_CHILD = """
import resource
endpoint = sys.argv[1]
if endpoint:
    import ondine_otel
    handle = ondine_otel.instrument(otlp_endpoint=endpoint, traces_exporter="otlp",
                                    metrics_exporter="otlp", llm_span_limit={limit},
                                    llm_span_rate={rate})
peaks, seconds = [], []
for rows in ({small}, {large}):
    pipeline = build_demo_pipeline(load_reviews(rows), checkpoint_dir=tempfile.mkdtemp(),
                                   checkpoint_interval=10_000)
    started = time.perf_counter()
    pipeline.execute()
    seconds.append(time.perf_counter() - started)
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
if endpoint:
    handle.shutdown(timeout=10)
report(peaks_kib=peaks, seconds=seconds)
"""


def _child(endpoint: str) -> str:
    return _CHILD.format(
        small=SMALL, large=LARGE, limit=LLM_SPAN_LIMIT, rate=LLM_SPAN_RATE
    ).replace("sys.argv[1]", repr(endpoint))


def test_hundred_thousand_rows_keep_spans_capped_and_memory_flat(
    otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    # Both at once: memory does not depend on speed, and it halves the wall time.
    bare_process = jobs.start(_child(""))
    instrumented_process = jobs.start(_child(otlp_http_receiver.endpoint))
    bare = jobs.finish(bare_process, timeout=300)
    instrumented = jobs.finish(instrumented_process, timeout=300)
    for done in (bare, instrumented):
        assert done.returncode == 0 and done.result is not None, done.explain()
    assert bare.result is not None and instrumented.result is not None
    bare_kib, instr_kib = bare.result["peaks_kib"], instrumented.result["peaks_kib"]
    adapter_growth_mib = ((instr_kib[1] - instr_kib[0]) - (bare_kib[1] - bare_kib[0])) / 1024
    extra_mib = (instr_kib[1] - bare_kib[1]) / 1024

    spans = otlp_http_receiver.spans()
    run_spans = [s for s in spans if s.name == semconv.SPAN_RUN]
    large_run = max(run_spans, key=lambda s: s.attributes.get(semconv.ATTR_ROWS_TOTAL, 0))
    in_large = [s for s in spans if s.trace_id == large_run.trace_id]
    chats = [s for s in in_large if s.name.startswith(semconv.SPAN_LLM_OPERATION + " ")]
    seconds = instrumented.result["seconds"][1]
    cap = LLM_SPAN_LIMIT + LLM_SPAN_RATE * seconds + 1
    dropped = large_run.attributes.get(semconv.ATTR_LLM_SPANS_DROPPED)
    figures.record(
        f"{LARGE:,} rows with per-call spans on",
        "a trace with the first calls, a sample after them, and the dropped count",
        "chat spans capped per run; adapter memory flat in rows",
        f"{len(chats)} chat spans (cap {cap:.0f}), {dropped} dropped; peak RSS "
        f"{instr_kib[1] / 1024:.0f} MiB vs bare {bare_kib[1] / 1024:.0f} MiB "
        f"(+{extra_mib:.0f} MiB); adapter growth 10k->100k rows {adapter_growth_mib:+.1f} MiB; "
        f"{LARGE / seconds:,.0f} rows/s instrumented vs "
        f"{LARGE / bare.result['seconds'][1]:,.0f} bare",
        adapter_growth_mib=adapter_growth_mib,
        extra_mib=extra_mib,
    )
    assert large_run.attributes[semconv.ATTR_ROWS_TOTAL] == LARGE
    assert LLM_SPAN_LIMIT <= len(chats) <= cap, (len(chats), cap)
    assert dropped == LARGE - len(chats)
    assert len(in_large) < cap + 20  # run + stages + capped chat spans, nothing per row
    # Flat in rows. ondine's own peak RSS at 100,000 rows varies by ±20 MiB from run to run
    # (make bench: bare 316-355 MB), so the bound is noise-sized; a leak of even 0.5 KiB per
    # row would add 44 MiB over these 90,000 rows.
    assert adapter_growth_mib < 40, (bare_kib, instr_kib)
