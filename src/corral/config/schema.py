"""The typed, validated configuration the rest of corral reads. Built only by ``loader``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ProviderType = Literal["ollama", "openai", "demo"]

OLLAMA_PATHS: dict[str, str] = {
    "chat": "/api/chat",
    "generate": "/api/generate",
    "embed": "/api/embed",
    "models": "/api/tags",
    "loaded": "/api/ps",
    "health": "/api/version",
}
OPENAI_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "models": "/models",
    "health": "/models",
}
DEFAULT_PATHS: dict[str, dict[str, str]] = {"ollama": OLLAMA_PATHS, "openai": OPENAI_PATHS, "demo": {}}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: ProviderType
    base_url: str
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    verify_ssl: bool = True
    timeout: float = 600.0
    connect_timeout: float = 5.0
    priority: int = 0
    weight: float = 1.0
    enabled: bool = True
    models: tuple[str, ...] | None = None
    paths: dict[str, str] = field(default_factory=dict)
    max_connections: int = 256
    # Ollama only
    keep_alive: str | int | None = None
    num_ctx: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, kind: str) -> str:
        return self.paths.get(kind) or DEFAULT_PATHS[self.type][kind]


@dataclass(frozen=True, slots=True)
class ModelAlias:
    name: str
    target: str  # "provider/model"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    max_request_bytes: int = 32 * 1024 * 1024
    shutdown_timeout: float = 30.0
    discovery_interval: float = 60.0
    discovery_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    source: str  # the file it came from, or "<defaults>"
    master_key: str | None = None
    providers: tuple[ProviderConfig, ...] = ()
    models: tuple[ModelAlias, ...] = ()
    server: ServerConfig = field(default_factory=ServerConfig)
    demo: bool = False
