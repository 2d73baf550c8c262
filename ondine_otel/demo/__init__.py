"""Offline demo kit: a deterministic LLM client, sample reviews and a ready-made pipeline.

Lets the CLI demo, the tests and the benchmarks drive real ondine runs without network access.
"""

from ondine_otel.demo.client import OfflineLLMClient, SimulatedLLMError
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import build_demo_pipeline

__all__ = ["OfflineLLMClient", "SimulatedLLMError", "build_demo_pipeline", "load_reviews"]
