"""Ratio sampling that works with ondine's trace ids: the rightmost 56 bits decide.

ondine's trace id is a uuid4 as an integer. The SDK's ``TraceIdRatioBased`` compares the low
64 bits with ``ratio * 2**64``, but the top two of those bits are the UUID variant, always
``10``: every id lies in [2**63, 2**63 + 2**62), so a ratio below 0.5 keeps nothing and one
above 0.75 keeps everything. OpenTelemetry's consistent probability sampling (and the W3C Trace
Context level 2 "random" flag) takes the rightmost 56 bits as the randomness instead; in a
uuid4 those are all random, and in any W3C-random or SDK-generated id too. Keeping the same
rule as OTel's threshold sampling means every service that samples on those bits agrees on
which traces to keep.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = [
    "RANDOM_BITS",
    "ParentBasedRandomBitsRatioSampler",
    "RandomBitsRatioSampler",
    "parentbased_traceidratio_sampler",
    "traceidratio_sampler",
]

RANDOM_BITS = 56
_RANDOM_MASK = (1 << RANDOM_BITS) - 1
_SPAN = 1 << RANDOM_BITS


class RandomBitsRatioSampler(Sampler):
    """Samples a trace iff its rightmost 56 bits fall below ``ratio * 2**56``.

    A drop-in replacement for the SDK's ``TraceIdRatioBased`` whose decision is right for
    uuid4-derived ids. The threshold is computed once; ``should_sample`` is one mask and one
    comparison.
    """

    def __init__(self, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"sampling ratio must be in [0, 1], got {ratio!r}")
        self._ratio = float(ratio)
        self._threshold = round(self._ratio * _SPAN)

    @property
    def ratio(self) -> float:
        return self._ratio

    @property
    def threshold(self) -> int:
        """Ids whose rightmost 56 bits are below this are sampled."""
        return self._threshold

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent_state = get_current_span(parent_context).get_span_context().trace_state
        if trace_id & _RANDOM_MASK < self._threshold:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent_state)
        return SamplingResult(Decision.DROP, None, parent_state)

    def get_description(self) -> str:
        return f"RandomBitsRatioSampler{{{self._ratio}}}"


class ParentBasedRandomBitsRatioSampler(ParentBased):
    """Follows the parent's decision; a root span is sampled by ``RandomBitsRatioSampler``.

    Every span of a run (stage and LLM call spans are children of the run span) therefore
    shares the run's decision.
    """

    def __init__(self, ratio: float) -> None:
        super().__init__(RandomBitsRatioSampler(ratio))


def _ratio(argument: float | str | None) -> float:
    """The SDK passes a float for its own names and the raw OTEL_TRACES_SAMPLER_ARG (or None)
    for others; like the SDK, an unset or unparsable argument means 1.0."""
    if argument is None or (isinstance(argument, str) and not argument.strip()):
        return 1.0
    try:
        value = float(argument)
    except ValueError:
        return 1.0
    return value if 0.0 <= value <= 1.0 else 1.0


def traceidratio_sampler(argument: float | str | None) -> Sampler:
    """Entry point ``ondine_traceidratio`` of ``opentelemetry_traces_sampler``."""
    return RandomBitsRatioSampler(_ratio(argument))


def parentbased_traceidratio_sampler(argument: float | str | None) -> Sampler:
    """Entry point ``ondine_parentbased_traceidratio`` of ``opentelemetry_traces_sampler``."""
    return ParentBasedRandomBitsRatioSampler(_ratio(argument))
