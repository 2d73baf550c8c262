"""How a model and its provider are named in spans and metric labels.

ondine's LiteLLM client reports a route (`openai/gpt-4o-mini`, `groq/openai/gpt-oss-20b`) while
the pipeline's LLM spec names the model as the user typed it. Both must give the same `model`
label, or spend would split across two series: the leading provider segment of a route goes to
the provider, the rest is the model.
"""

from __future__ import annotations

from typing import Any

# litellm provider prefixes that ondine pipelines commonly route through.
KNOWN_PROVIDERS = frozenset(
    {
        "openai",
        "azure",
        "azure_ai",
        "anthropic",
        "groq",
        "mistral",
        "cohere",
        "gemini",
        "vertex_ai",
        "bedrock",
        "ollama",
        "ollama_chat",
        "together_ai",
        "fireworks_ai",
        "deepseek",
        "xai",
        "openrouter",
        "huggingface",
        "perplexity",
        "cerebras",
        "sambanova",
        "databricks",
        "watsonx",
        "replicate",
        "anyscale",
        "deepinfra",
        "nvidia_nim",
        "mlx",
        "text-completion-openai",
        "hosted_vllm",
        "vllm",
        "lm_studio",
        "litellm_proxy",
    }
)


def _text(value: Any) -> str | None:
    """Enum members (ondine's LLMProvider) and strings alike, as plain lower-case text."""
    if value is None:
        return None
    raw = getattr(value, "value", value)
    text = str(raw).strip()
    return text or None


def split_route(route: str, provider: str | None = None) -> tuple[str | None, str]:
    """(provider, model) for a litellm route or a plain model name."""
    head, sep, rest = route.partition("/")
    if sep and rest and (head.lower() in KNOWN_PROVIDERS or head.lower() == (provider or "")):
        return head.lower(), rest
    return provider, route


def from_spec(spec: Any) -> tuple[str | None, str | None]:
    """(provider, model) from an ondine LLMSpec, or (None, None) when there is none."""
    if spec is None:
        return None, None
    provider = _text(getattr(spec, "provider", None))
    provider = provider.lower() if provider else None
    model = _text(getattr(spec, "model", None))
    if model is None:
        return provider, None
    return split_route(model, provider)


def from_pipeline(pipeline: Any) -> tuple[str | None, str | None]:
    """(provider, model) of a pipeline's LLM spec, tolerating pipelines without one."""
    specs = getattr(pipeline, "specifications", None)
    return from_spec(getattr(specs, "llm", None))
