"""Ratio sampling keeps the configured share of ondine runs, whole runs at a time.

ondine's trace ids are uuid4 integers; the SDK's TraceIdRatioBased reads the low 64 bits,
whose top two bits are the fixed UUID variant, so at 0.25 it keeps nothing. These tests run
the same checks against it to show that they can fail.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry.sdk._configuration import _import_sampler
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from ondine_otel import OtelObserver, TelemetryConfig
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import build_demo_pipeline
from ondine_otel.export.providers import build_sampler
from ondine_otel.export.sampler import (
    ParentBasedRandomBitsRatioSampler,
    RandomBitsRatioSampler,
)
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.ids import trace_id_from_ondine
from tests.spy import ContextSpy

RATIO = 0.25


def ondine_trace_ids(count: int) -> list[int]:
    """Trace ids exactly as ondine-otel derives them from ondine's `str(uuid4())`."""
    ids = [trace_id_from_ondine(str(uuid.uuid4())) for _ in range(count)]
    assert all(i is not None for i in ids)
    return [i for i in ids if i is not None]


def kept(sampler: Sampler, trace_ids: list[int]) -> list[int]:
    return [
        t
        for t in trace_ids
        if sampler.should_sample(None, t, "ondine.pipeline", SpanKind.INTERNAL).decision
        is Decision.RECORD_AND_SAMPLE
    ]


def assert_share(count: int, total: int, ratio: float) -> None:
    """Within 5 standard deviations of the binomial mean (a false alarm about 1 in 1.7M)."""
    bound = 5 * math.sqrt(total * ratio * (1 - ratio))
    assert abs(count - total * ratio) <= bound, (count, total, ratio, bound)


@pytest.mark.parametrize("ratio", [0.01, 0.1, RATIO, 0.5, 0.6, 0.9])
@pytest.mark.parametrize("parent_based", [False, True])
def test_kept_share_of_ondine_ids_matches_the_ratio(ratio: float, parent_based: bool) -> None:
    ids = ondine_trace_ids(4000)
    sampler: Sampler = (
        ParentBasedRandomBitsRatioSampler(ratio) if parent_based else RandomBitsRatioSampler(ratio)
    )
    assert_share(len(kept(sampler, ids)), len(ids), ratio)


def test_the_sdk_ratio_sampler_fails_the_same_check() -> None:
    ids = ondine_trace_ids(4000)
    assert kept(TraceIdRatioBased(RATIO), ids) == []  # the bug this module fixes
    with pytest.raises(AssertionError):
        assert_share(len(kept(TraceIdRatioBased(RATIO), ids)), len(ids), RATIO)
    with pytest.raises(AssertionError):  # 0.6 keeps ~40 %, 0.75 everything
        assert_share(len(kept(TraceIdRatioBased(0.6), ids)), len(ids), 0.6)


def test_decision_uses_the_rightmost_56_bits_only() -> None:
    sampler = RandomBitsRatioSampler(RATIO)
    assert sampler.threshold == 2**54
    high = (0xFF << 56) | (2**54 - 1)  # any upper bits, random part just below the threshold
    assert kept(sampler, [high, 2**54 - 1]) == [high, 2**54 - 1]
    assert kept(sampler, [2**54, (0xFF << 56) | 2**54]) == []
    assert kept(RandomBitsRatioSampler(0.0), [1, 2**55]) == []
    assert len(kept(RandomBitsRatioSampler(1.0), [1, 2**56 - 1, 2**128 - 1])) == 3
    with pytest.raises(ValueError, match="ratio"):
        RandomBitsRatioSampler(1.5)


def test_descriptions_name_the_sampler_and_ratio() -> None:
    assert RandomBitsRatioSampler(RATIO).get_description() == "RandomBitsRatioSampler{0.25}"
    description = ParentBasedRandomBitsRatioSampler(RATIO).get_description()
    assert description.startswith("ParentBased{root:RandomBitsRatioSampler{0.25}")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("traceidratio", RandomBitsRatioSampler),
        ("parentbased_traceidratio", ParentBasedRandomBitsRatioSampler),
        ("ondine_traceidratio", RandomBitsRatioSampler),
        ("ondine_parentbased_traceidratio", ParentBasedRandomBitsRatioSampler),
    ],
)
def test_build_sampler_uses_the_random_bits_for_ratio_names(name: str, expected: type) -> None:
    config = TelemetryConfig.from_settings(
        environ={}, traces_sampler=name, traces_sampler_arg=RATIO
    )
    sampler = build_sampler(config)
    if expected is ParentBasedRandomBitsRatioSampler:
        assert isinstance(sampler, ParentBased)
        assert "root:RandomBitsRatioSampler{0.25}" in sampler.get_description()
    else:
        assert isinstance(sampler, RandomBitsRatioSampler)
        assert sampler.ratio == RATIO


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ondine_traceidratio", RandomBitsRatioSampler),
        ("ondine_parentbased_traceidratio", ParentBasedRandomBitsRatioSampler),
    ],
)
def test_entry_points_load_the_way_the_sdk_configurator_loads_them(
    name: str, cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    (point,) = entry_points(group="opentelemetry_traces_sampler", name=name)
    assert isinstance(point.load()("0.25"), cls)
    assert isinstance(point.load()(None), cls)  # unset argument: ratio 1.0, like the SDK
    # The SDK's own loader (what opentelemetry-instrument runs for OTEL_TRACES_SAMPLER).
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sampler = _import_sampler(name)
    assert isinstance(sampler, cls)
    assert_share(len(kept(sampler, ondine_trace_ids(4000))), 4000, RATIO)


def run_sampled(
    sampler: Sampler, runs: int, tmp_path: Path
) -> tuple[set[int], dict[int, list[str]]]:
    """Execute `runs` tiny real ondine runs under `sampler`.

    Returns the trace ids the random-bits rule keeps and the exported span names by trace id.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    threshold = RandomBitsRatioSampler(RATIO).threshold
    started: list[int] = []
    for number in range(runs):
        pipeline = build_demo_pipeline(
            load_reviews(2), checkpoint_dir=tmp_path / str(number), concurrency=1
        )
        spy = ContextSpy()
        pipeline.add_observer(spy)
        pipeline.add_observer(OtelObserver(tracer_provider=provider))
        pipeline.execute()
        started.append(uuid.UUID(spy.trace_id_at_start).int)
    by_trace: dict[int, list[str]] = defaultdict(list)
    for span in exporter.get_finished_spans():
        by_trace[span.context.trace_id].append(span.name)
    return {t for t in started if t & (2**56 - 1) < threshold}, by_trace


def test_real_runs_are_sampled_whole_or_not_at_all(tmp_path: Path) -> None:
    """Real ondine runs through the sampler ondine-otel builds for parentbased_traceidratio."""
    config = TelemetryConfig.from_settings(
        environ={}, traces_sampler="parentbased_traceidratio", traces_sampler_arg=RATIO
    )
    runs = 48
    expected, by_trace = run_sampled(build_sampler(config), runs, tmp_path)
    assert set(by_trace) == expected  # no span of an unsampled run, every sampled run
    for names in by_trace.values():  # ...with all of its spans
        assert names.count(semconv.SPAN_RUN) == 1
        assert sum(n.startswith(semconv.SPAN_STAGE_PREFIX) for n in names) >= 4
        assert sum(n.startswith("chat ") for n in names) == 2
    assert_share(len(expected), runs, RATIO)
    assert 0 < len(expected) < runs


def test_real_runs_under_the_sdk_ratio_sampler_are_all_dropped(tmp_path: Path) -> None:
    """The same runs under the SDK's sampler: nothing at all is exported at 0.25."""
    _, by_trace = run_sampled(ParentBased(TraceIdRatioBased(RATIO)), 24, tmp_path)
    assert dict(by_trace) == {}
