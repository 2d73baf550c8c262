"""An offline, deterministic LLM client for the demo, the tests and the benchmarks.

It goes through ondine's real invocation path (error policies, checkpoints, cost accounting,
observer events) without a network or an API key, so telemetry can be exercised end to end and
the same input always yields the same answers, tokens and cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from ondine.adapters.llm_client import LLMClient
from ondine.core.models import LLMResponse
from ondine.core.specifications import LLMSpec
from pydantic import BaseModel

if TYPE_CHECKING:
    from ondine.observability.dispatcher import ObserverDispatcher

LABELS: tuple[str, ...] = ("positive", "negative", "neutral")

# gpt-4o-mini list prices (USD per 1K tokens), used when the spec names none, so the demo
# reports a realistic, non-zero cost.
DEFAULT_INPUT_COST_PER_1K = Decimal("0.00015")
DEFAULT_OUTPUT_COST_PER_1K = Decimal("0.0006")

_POSITIVE_WORDS = frozenset(
    [
        "great",
        "love",
        "loved",
        "excellent",
        "perfect",
        "amazing",
        "fantastic",
        "happy",
        "recommend",
        "sturdy",
        "fast",
        "comfortable",
        "reliable",
        "beautiful",
        "works",
        "best",
    ]
)
_NEGATIVE_WORDS = frozenset(
    [
        "broke",
        "broken",
        "terrible",
        "awful",
        "disappointed",
        "refund",
        "returned",
        "poor",
        "cheap",
        "flimsy",
        "slow",
        "useless",
        "worst",
        "leaks",
        "stopped",
        "waste",
    ]
)
_ZERO_UUID = uuid.UUID(int=0)


class SimulatedLLMError(RuntimeError):
    """A provider failure injected by ``failure_rate``; ondine's error policy decides its fate."""


def estimate_tokens(text: str) -> int:
    """Roughly 1.3 tokens per word, never 0, so every call has a visible cost."""
    return max(1, round(len(text.split()) * 1.3))


def _fraction(prompt: str, salt: str) -> float:
    """A stable number in [0, 1) per prompt: unlike ``hash()`` it survives process restarts."""
    digest = hashlib.blake2b(f"{salt}\0{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def classify(prompt: str) -> str:
    """Sentiment by keyword vote: plausible answers for the sample reviews, stable per prompt.

    No keywords means neutral; a tied vote (a mixed review) is settled by a hash of the prompt.
    """
    words = [w.strip(".,!?;:\"'()").lower() for w in prompt.split()]
    pos = sum(w in _POSITIVE_WORDS for w in words)
    neg = sum(w in _NEGATIVE_WORDS for w in words)
    if pos != neg:
        return "positive" if pos > neg else "negative"
    if pos == 0:
        return "neutral"
    return LABELS[int(_fraction(prompt, "label") * len(LABELS))]


class OfflineLLMClient(LLMClient):
    """Answers sentiment prompts locally, behaving like ondine's LiteLLM client to its callers.

    ``latency_s`` simulates provider latency (0 means no sleeping at all, for throughput runs);
    ``latency_jitter`` spreads it by up to that fraction either way, the same for the same
    prompt: real calls vary, and identical latencies keep concurrent calls in lockstep;
    ``failure_rate`` makes that fraction of prompts fail, always the same prompts;
    ``interrupt_after`` / ``crash_after`` let exactly N calls succeed and then raise
    ``KeyboardInterrupt`` / ``RuntimeError("simulated crash")`` on every later call, to test
    interrupted and crashed runs and their resumption.
    """

    def __init__(
        self,
        spec: LLMSpec | None = None,
        *,
        latency_s: float = 0.0,
        latency_jitter: float = 0.0,
        failure_rate: float = 0.0,
        interrupt_after: int | None = None,
        crash_after: int | None = None,
    ) -> None:
        if spec is None:
            spec = LLMSpec(provider="openai", model="gpt-4o-mini")
        super().__init__(spec)
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if not 0.0 <= latency_jitter <= 1.0:
            raise ValueError("latency_jitter must be within [0, 1]")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        # Like the real client, expose the litellm route ("openai/gpt-4o-mini"): it is what
        # ondine puts in responses and llm_call events, and what telemetry reports.
        provider = spec.provider.value if isinstance(spec.provider, Enum) else str(spec.provider)
        routed = provider == "litellm" or spec.model.startswith(f"{provider}/")
        self.model = spec.model if routed else f"{provider}/{spec.model}"
        self.latency_s = latency_s
        self.latency_jitter = latency_jitter
        self.failure_rate = failure_rate
        self.interrupt_after = interrupt_after
        self.crash_after = crash_after
        self.input_cost_per_1k = spec.input_cost_per_1k_tokens or DEFAULT_INPUT_COST_PER_1K
        self.output_cost_per_1k = spec.output_cost_per_1k_tokens or DEFAULT_OUTPUT_COST_PER_1K
        self._lock = threading.Lock()
        self._calls = 0
        self._admitted = 0
        self._succeeded = 0
        self._dispatcher: ObserverDispatcher | None = None

    @property
    def call_count(self) -> int:
        """Every invocation, including the ones that raised."""
        return self._calls

    @property
    def success_count(self) -> int:
        """Invocations that returned a response (and emitted an ``llm_call`` event)."""
        return self._succeeded

    def set_observer_dispatcher(self, dispatcher: ObserverDispatcher) -> None:
        """Called by ondine's pipeline, exactly as for its own client, to receive the dispatcher."""
        self._dispatcher = dispatcher

    def estimate_tokens(self, text: str) -> int:
        """Same estimate the answers are billed with, so ondine's cost estimates match the run."""
        return estimate_tokens(text)

    def invoke(self, prompt: str, **kwargs: Any) -> LLMResponse:
        """Synchronous call; blocks the thread for ``latency_s``."""
        started = self._admit(prompt)
        if self.latency_s:
            time.sleep(self._delay(prompt))
        return self._respond(prompt, classify(prompt), started, kwargs)

    async def ainvoke(self, prompt: str, **kwargs: Any) -> LLMResponse:
        """The path ondine's async executor uses; yields to the loop for ``latency_s``."""
        started = self._admit(prompt)
        if self.latency_s:
            await asyncio.sleep(self._delay(prompt))
        return self._respond(prompt, classify(prompt), started, kwargs)

    def structured_invoke(
        self, prompt: str, output_cls: type[BaseModel], **kwargs: Any
    ) -> LLMResponse:
        """Fills every field of ``output_cls`` with the label; enough for single-label schemas."""
        started = self._admit(prompt)
        if self.latency_s:
            time.sleep(self._delay(prompt))
        return self._structured(prompt, output_cls, started, kwargs)

    async def structured_invoke_async(
        self, prompt: str, output_cls: type[BaseModel], **kwargs: Any
    ) -> LLMResponse:
        """Async structured path; overridden so latency does not block the event loop."""
        started = self._admit(prompt)
        if self.latency_s:
            await asyncio.sleep(self._delay(prompt))
        return self._structured(prompt, output_cls, started, kwargs)

    def _structured(
        self, prompt: str, output_cls: type[BaseModel], started: float, kwargs: dict[str, Any]
    ) -> LLMResponse:
        label = classify(prompt)
        result = output_cls.model_validate(dict.fromkeys(output_cls.model_fields, label))
        response = self._respond(prompt, result.model_dump_json(), started, kwargs)
        response.structured_result = result
        return response

    def _delay(self, prompt: str) -> float:
        """This prompt's latency: `latency_s`, spread deterministically by the jitter."""
        if not self.latency_jitter:
            return self.latency_s
        spread = 2.0 * _fraction(prompt, "latency") - 1.0
        return self.latency_s * (1.0 + self.latency_jitter * spread)

    def _admit(self, prompt: str) -> float:
        """Decide up front whether this call fails, so limits count only calls that succeed."""
        with self._lock:
            self._calls += 1
            if self.interrupt_after is not None and self._admitted >= self.interrupt_after:
                raise KeyboardInterrupt
            if self.crash_after is not None and self._admitted >= self.crash_after:
                raise RuntimeError("simulated crash")
            if self.failure_rate and _fraction(prompt, "failure") < self.failure_rate:
                raise SimulatedLLMError(f"simulated provider error for {self.model}")
            self._admitted += 1
        return time.perf_counter()

    def _respond(
        self, prompt: str, text: str, started: float, kwargs: dict[str, Any]
    ) -> LLMResponse:
        """Build the billed response and report it to observers, as the real client does."""
        tokens_in, tokens_out = estimate_tokens(prompt), estimate_tokens(text)
        cost = (tokens_in * self.input_cost_per_1k + tokens_out * self.output_cost_per_1k) / 1000
        latency_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self._succeeded += 1
        self._emit_llm_call(prompt, text, tokens_in, tokens_out, cost, latency_ms, kwargs)
        return LLMResponse(
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            model=self.model,
            cost=cost,
            latency_ms=latency_ms,
            metadata={},
        )

    def _emit_llm_call(
        self,
        prompt: str,
        completion: str,
        tokens_in: int,
        tokens_out: int,
        cost: Decimal,
        latency_ms: float,
        kwargs: dict[str, Any],
    ) -> None:
        """Same event shape and placeholders as ``UnifiedLiteLLMClient._emit_llm_call_event``."""
        if self._dispatcher is None:
            return
        from ondine.observability.events import LLMCallEvent

        event = LLMCallEvent(
            pipeline_id=_ZERO_UUID,
            run_id=_ZERO_UUID,
            stage_name="LLMInvocation",
            row_index=0,
            timestamp=datetime.now(),
            trace_id=str(uuid.uuid4()),
            span_id=str(uuid.uuid4())[:16],
            prompt=prompt,
            model=self.model,
            provider=self.model.split("/")[0] if "/" in self.model else "unknown",
            temperature=self.spec.temperature,
            completion=completion,
            system_message=kwargs.get("system_message"),
            max_tokens=self.spec.max_tokens,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            total_tokens=tokens_in + tokens_out,
            cost=cost,
            latency_ms=latency_ms,
            metadata={},
        )
        self._dispatcher.dispatch("llm_call", event)
