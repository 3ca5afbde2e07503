"""LiteLLM's provider prefixes (``litellm_params.model: "<prefix>/<model id>"``) and what each
becomes in corral: an ``ollama`` provider, an ``openai`` provider at the provider's documented
OpenAI-compatible base URL, or a reason it cannot be expressed (yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OLLAMA_DEFAULT = "http://localhost:11434"  # LiteLLM's default api_base for ollama/ and ollama_chat/
OLLAMA_CLOUD_HOST = "ollama.com"


@dataclass(frozen=True, slots=True)
class Prefix:
    kind: Literal["ollama", "openai", "unsupported"]
    base_url: str | None = None  # None: the entry must give api_base
    name: str | None = None  # the provider name corral gives it (else derived from the host)
    why: str = ""  # for "unsupported": the reason and what to do


OPENAI_COMPATIBLE: dict[str, Prefix] = {
    "openai": Prefix("openai", "https://api.openai.com/v1", "openai"),
    "text-completion-openai": Prefix("openai", "https://api.openai.com/v1", "openai"),
    "hosted_vllm": Prefix("openai", None),
    "openai_like": Prefix("openai", None),
    "litellm_proxy": Prefix("openai", None),
    "lm_studio": Prefix("openai", "http://localhost:1234/v1", "lm-studio"),
    "llamafile": Prefix("openai", "http://localhost:8080/v1", "llamafile"),
    "groq": Prefix("openai", "https://api.groq.com/openai/v1", "groq"),
    "mistral": Prefix("openai", "https://api.mistral.ai/v1", "mistral"),
    "openrouter": Prefix("openai", "https://openrouter.ai/api/v1", "openrouter"),
    "deepseek": Prefix("openai", "https://api.deepseek.com/v1", "deepseek"),
    "together_ai": Prefix("openai", "https://api.together.xyz/v1", "together"),
    "fireworks_ai": Prefix("openai", "https://api.fireworks.ai/inference/v1", "fireworks"),
    "gemini": Prefix("openai", "https://generativelanguage.googleapis.com/v1beta/openai", "gemini"),
    "xai": Prefix("openai", "https://api.x.ai/v1", "xai"),
    "perplexity": Prefix("openai", "https://api.perplexity.ai", "perplexity"),
    "deepinfra": Prefix("openai", "https://api.deepinfra.com/v1/openai", "deepinfra"),
    "cerebras": Prefix("openai", "https://api.cerebras.ai/v1", "cerebras"),
    "nvidia_nim": Prefix("openai", "https://integrate.api.nvidia.com/v1", "nvidia-nim"),
    "sambanova": Prefix("openai", "https://api.sambanova.ai/v1", "sambanova"),
    "novita": Prefix("openai", "https://api.novita.ai/v3/openai", "novita"),
    "github": Prefix("openai", "https://models.inference.ai.azure.com", "github-models"),
}
OLLAMA: dict[str, Prefix] = {
    "ollama": Prefix("ollama", OLLAMA_DEFAULT),
    "ollama_chat": Prefix("ollama", OLLAMA_DEFAULT),
}
UNSUPPORTED: dict[str, str] = {
    "anthropic": "needs the anthropic provider type, not in this version. Keep it on LiteLLM for now, "
    "or reach Claude through an OpenAI-compatible provider (openrouter/...).",
    "azure": "Azure OpenAI needs an api-version query parameter on every request and deployment paths, "
    "which corral's openai provider type cannot express in this version. Keep it on LiteLLM, or use "
    "an OpenAI-compatible endpoint in front of it.",
    "azure_ai": "Azure AI Foundry endpoints need api-version handling that corral cannot express in "
    "this version.",
    "bedrock": "AWS Bedrock signs requests with SigV4 and has its own API; corral has no Bedrock "
    "provider type. Use Bedrock's OpenAI-compatible endpoint, or an OpenAI-compatible proxy in front.",
    "sagemaker": "AWS SageMaker needs SigV4-signed requests; corral has no SageMaker provider type.",
    "vertex_ai": "Vertex AI needs Google service-account auth; corral has no Vertex provider type. "
    "For Gemini models, gemini/ (the Gemini API's OpenAI-compatible endpoint) converts.",
    "cohere": "Cohere's own API is not OpenAI-compatible; use its compatibility endpoint as an openai "
    "provider by hand.",
    "huggingface": "Hugging Face's inference API is not mapped; a TGI server with its OpenAI-compatible "
    "/v1 converts as hosted_vllm/ or openai/ with api_base.",
    "replicate": "Replicate's API is not OpenAI-compatible; corral cannot reach it.",
    "watsonx": "watsonx needs IBM Cloud IAM auth; corral has no watsonx provider type.",
}
# Model ids LiteLLM routes to OpenAI without a prefix (it looks them up in its cost map).
OPENAI_BARE = ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "dall-e", "whisper", "tts-")
ANTHROPIC_BARE = ("claude-",)


def split(model: str) -> tuple[str | None, str]:
    """``"ollama_chat/kimi-k2.5"`` -> ``("ollama_chat", "kimi-k2.5")``; a bare id -> ``(None, id)``."""
    prefix, sep, rest = model.partition("/")
    if sep and rest and prefix in {*OPENAI_COMPATIBLE, *OLLAMA, *UNSUPPORTED}:
        return prefix, rest
    return None, model


def lookup(prefix: str) -> Prefix | None:
    if prefix in OLLAMA:
        return OLLAMA[prefix]
    if prefix in OPENAI_COMPATIBLE:
        return OPENAI_COMPATIBLE[prefix]
    if prefix in UNSUPPORTED:
        return Prefix("unsupported", why=UNSUPPORTED[prefix])
    return None
