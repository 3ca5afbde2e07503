"""The provider types corral knows, each declared once: ``REGISTRY``.

A type's ``ProviderSpec`` says everything the rest of corral needs to know about it without
importing it: the config keys only it takes, how its ``api_key`` is sent (``Auth``: a Bearer
token, the value of another header such as ``x-api-key``, or nothing), its default paths (the
``health`` probe, ``models`` discovery, and the API's endpoints), its defaults, whether its
models are local (priced 0 unless priced on purpose) and whether its probe reports which models
are loaded (warm routing); and ``adapter``, the ``module:Class`` that implements it (the
provider contract of ``corral.providers.base``), imported only by the gateway that builds it.

Config validation (``loader``), the admin API's schema (``http/admin/openapi``), prices
(``usage/prices``), health state (``routing/state``) and the gateway read from here. Adding a
type is one spec here and one module implementing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Auth:
    """How a provider's ``api_key`` goes upstream: ``header`` (None: not sent at all), as
    ``Bearer <key>`` or as it is."""

    header: str | None = "Authorization"
    bearer: bool = True

    def headers(self, key: str | None) -> dict[str, str]:
        if key is None or self.header is None:
            return {}
        return {self.header: f"Bearer {key}" if self.bearer else key}

    @property
    def label(self) -> str:
        """How the config spells it: bearer, none, or the header's name."""
        if self.header is None:
            return "none"
        return "bearer" if self.bearer else self.header


BEARER = Auth()
NO_AUTH = Auth(header=None)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str  # the config's ``type``
    adapter: str  # "module:Class" implementing it
    paths: Mapping[str, str]  # path kind -> default path; "health" is probed, "models" listed
    fields: frozenset[str] = frozenset()  # config keys only providers of this type take
    auth: Auth = BEARER
    max_parallel: int = 0  # requests in flight at once by default (0: no cap)
    strip_suffix: str | None = None  # dropped from a base_url ending in it
    local: bool = False  # its models run on the user's hardware: cost 0 unless priced on purpose
    reports_loaded: bool = False  # its probe lists the loaded models (warm routing)
    configurable: bool = True  # may be a provider's ``type`` in a config
    # client APIs a provider of this type may declare it serves natively (its ``surfaces``):
    # their calls are then passed through instead of translated
    surfaces: frozenset[str] = frozenset()


OLLAMA_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "chat": "/api/chat",
        "generate": "/api/generate",
        "embed": "/api/embed",
        "embeddings": "/api/embeddings",
        "show": "/api/show",
        "models": "/api/tags",
        "loaded": "/api/ps",
        "health": "/api/version",
    }
)
OPENAI_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "chat": "/chat/completions",
        "completions": "/completions",
        "embeddings": "/embeddings",
        "messages": "/messages",  # Anthropic's Messages API, for ``surfaces: [messages]``
        "responses": "/responses",  # OpenAI's Responses API, for ``surfaces: [responses]``
        "models": "/models",
        "health": "/models",
    }
)
# the client APIs an OpenAI-compatible server may serve natively (vLLM >= 0.11.1, Ollama's /v1)
NATIVE_SURFACES: frozenset[str] = frozenset({"messages", "responses"})

ANTHROPIC_PATHS: Mapping[str, str] = MappingProxyType(
    {"messages": "/v1/messages", "models": "/v1/models", "health": "/v1/models"}
)

REGISTRY: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        "ollama": ProviderSpec(
            "ollama",
            "corral.providers.ollama.provider:OllamaProvider",
            OLLAMA_PATHS,
            fields=frozenset({"keep_alive", "num_ctx", "options"}),
            max_parallel=4,  # Ollama runs OLLAMA_NUM_PARALLEL=1 by default; corral queues the rest
            strip_suffix="/api",  # Ollama Cloud documents https://ollama.com/api as its base
            local=True,
            reports_loaded=True,
        ),
        "openai": ProviderSpec(
            "openai",
            "corral.providers.openai_compat:OpenAIProvider",
            OPENAI_PATHS,
            fields=frozenset({"surfaces"}),
            surfaces=NATIVE_SURFACES,
        ),
        # the hosted Anthropic API and other Messages servers (issue #15)
        "anthropic": ProviderSpec(
            "anthropic", "corral.providers.anthropic:AnthropicProvider", ANTHROPIC_PATHS
        ),
        "demo": ProviderSpec(
            "demo", "corral.providers.demo:DemoProvider", {}, auth=NO_AUTH, local=True, configurable=False
        ),
    }
)
CONFIG_TYPES: tuple[str, ...] = tuple(name for name, s in REGISTRY.items() if s.configurable)
LOCAL_TYPES: frozenset[str] = frozenset(name for name, s in REGISTRY.items() if s.local)


def spec(name: str) -> ProviderSpec:
    """The spec of type ``name``; KeyError for a type corral does not know."""
    return REGISTRY[name]


def takes(key: str) -> tuple[str, ...]:
    """The types whose providers take the type-specific config key ``key``."""
    return tuple(name for name in CONFIG_TYPES if key in REGISTRY[name].fields)


def type_fields() -> frozenset[str]:
    """Every type-specific config key."""
    return frozenset().union(*(s.fields for s in REGISTRY.values()))
