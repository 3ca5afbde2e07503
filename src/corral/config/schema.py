"""The typed, validated configuration the rest of corral reads. Built only by ``loader``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from corral.config.provider_types import REGISTRY, Auth

ProviderType = str  # a name in provider_types.REGISTRY

DEFAULT_PATHS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {name: spec.paths for name, spec in REGISTRY.items()}
)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # the most of one upstream answer corral reads whole
MAX_LINE_BYTES = 8 * 1024 * 1024  # the longest NDJSON / SSE line of an upstream stream


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
    max_parallel: int = 0  # requests in flight at once; 0 = no cap (Ollama providers default to 4)
    first_token_timeout: float | None = None  # None: router.failover_timeout
    max_response_bytes: int = MAX_RESPONSE_BYTES  # a whole answer (folded stream, embeddings, show)
    max_line_bytes: int = MAX_LINE_BYTES  # one line of a stream
    auth: Auth | None = None  # how api_key is sent; None: as the type's spec says
    # OpenAI-compatible only: the other client APIs it serves natively ("messages", "responses"),
    # whose calls are passed through rather than translated to chat completions
    surfaces: tuple[str, ...] = ()
    # Ollama only
    keep_alive: str | int | None = None
    num_ctx: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, kind: str) -> str:
        return self.paths.get(kind) or DEFAULT_PATHS[self.type][kind]

    def key_headers(self) -> dict[str, str]:
        """The header that carries ``api_key`` upstream (none without a key)."""
        return (self.auth or REGISTRY[self.type].auth).headers(self.api_key)


@dataclass(frozen=True, slots=True)
class AliasTarget:
    target: str  # "provider/model" or "ollama/model"
    weight: float = 1.0
    priority: int | None = None  # None: the provider's priority


STRATEGIES = ("warm", "priority", "round_robin", "weighted", "least_busy", "latency")
# Other gateways' names for these (LiteLLM's routing_strategy, Olla's load balancers), accepted
# in a config and turned into corral's at load time; '-' and '_' and case do not matter.
STRATEGY_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "roundrobin": "round_robin",
        "simple_shuffle": "weighted",  # LiteLLM: a random pick weighted by weight
        "shuffle": "weighted",
        "random": "weighted",
        "least_connections": "least_busy",  # Olla
        "least_conn": "least_busy",
        "usage_based_routing": "least_busy",  # LiteLLM: least used; corral counts requests in flight
        "usage_based_routing_v2": "least_busy",
        "latency_based_routing": "latency",  # LiteLLM
        "lowest_latency": "latency",
    }
)


@dataclass(frozen=True, slots=True)
class ModelAlias:
    name: str
    targets: tuple[AliasTarget, ...]
    fallbacks: tuple[str, ...] = ()
    explicit_only: bool = False
    strategy: str | None = None  # None: router.strategy
    num_ctx: int | None = None  # pinned: clients cannot change it (no reload storms)
    hedge_after: float | str | None = None  # None: router.hedge_after
    affinity: bool | None = None  # session affinity; None: on for chat on a pool with Ollama members
    context_window_fallbacks: tuple[str, ...] = ()  # when the prompt fits none of its deployments
    capabilities: tuple[str, ...] | None = None  # overrides what the upstream says its model can do
    context_length: int | None = None  # overrides the model's maximum context the upstream says

    @property
    def target(self) -> str:
        return self.targets[0].target


@dataclass(frozen=True, slots=True)
class RouterConfig:
    strategy: str = "warm"
    default_fallbacks: tuple[str, ...] = ()
    failover_timeout: float = 30.0  # first token (or headers) per attempt
    request_timeout: float = 600.0  # the whole chain of attempts
    max_attempts: int = 5
    retry_budget_percent: float = 20.0
    retry_budget_min: int = 3
    queue_timeout: float = 10.0  # longest wait for a free slot in a pool
    warm_wait: float = 2.0  # wait this long for a busy warm instance before cold-loading another
    health_interval: float = 10.0
    health_timeout: float = 3.0
    eject_after: int = 3  # consecutive failures
    eject_base: float = 5.0
    eject_max: float = 300.0
    busy_backoff: float = 1.0
    power_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # adaptive first-token deadlines (routing/deadlines.py): warm = multiplier x recent warm p99,
    # clamped to [first_token_min, first_token_max (None: the fixed first-token timeout)]
    first_token_multiplier: float = 3.0
    first_token_min: float = 0.5
    first_token_max: float | None = None
    load_timeout: float = 300.0  # first-token allowance when the model must load (OLLAMA_LOAD_TIMEOUT)
    hedge_after: float | str | None = None  # every pool's default: seconds, or "p50"/"p95"/"p99"
    rules: tuple[TierRule, ...] = ()  # (power level, tier) -> candidate models
    affinity: AffinityConfig = field(default_factory=lambda: AffinityConfig())
    context_window_fallbacks: tuple[str, ...] = ()  # for every model without its own chain
    capabilities: dict[str, tuple[str, ...]] = field(default_factory=dict)  # provider/model or model
    context_length: dict[str, int] = field(default_factory=dict)  # provider/model or model -> tokens


@dataclass(frozen=True, slots=True)
class AffinityConfig:
    """Session affinity (routing/affinity.py): pins of conversations to deployments."""

    enabled: bool = True
    size: int = 100_000  # pins kept per process (least recently used go first)
    ttl: float = 3600.0  # a pin unused this long (seconds) is forgotten
    wait: float = 2.0  # seconds to wait for a slot on the pinned deployment before another
    # A prompt estimated below this many tokens does not wait for its full pinned deployment: a
    # free one holding the model warm takes it at once (0: never). Reading 2048 tokens again
    # costs an 8B model well under a second on a discrete GPU (a few thousand tokens a second),
    # about the wait above on slower hardware, while the pinned slot is held by a generation
    # that may run for tens of seconds. 2048 is also routing/context.py's FLOOR: bodies this
    # small are estimated from their length alone (bytes / 4), so deciding costs nothing. An
    # agent's prompt (a long system prompt and tools) is far above it and keeps waiting its pin.
    spill_below: int = 2048


@dataclass(frozen=True, slots=True)
class TierRule:
    """A power level's candidate for callers of one tier (``all``: any tier without its own rules)."""

    level: str
    model: str
    tier: str = "all"
    priority: int = 0
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    max_request_bytes: int = 32 * 1024 * 1024
    shutdown_timeout: float = 30.0
    discovery_interval: float = 60.0
    discovery_timeout: float = 5.0
    metrics_auth: bool = True  # GET /metrics needs an admin key (Prometheus: authorization credentials)
    send_timeout: float = 60.0  # no progress writing to a client for this long: close, free the slot
    body_timeout: float = 300.0  # a request body must arrive whole within this long of its head
    max_buffered_bytes: int = 256 * 1024 * 1024  # request bodies held in memory at once, all connections
    ping_interval: float = 10.0  # /v1/messages streams: a ping this often until the upstream starts
    workers: int | Literal["auto"] = 1  # processes serving (corral.supervisor); "auto" = usable CPUs


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The control-plane listener: the admin API, /metrics and the console."""

    host: str = "127.0.0.1"
    port: int = 4001
    tls_cert: str | None = None  # PEM files; with both set the listener speaks HTTPS
    tls_key: str | None = None
    allow_insecure_remote: bool = False  # serve a non-loopback address over plain HTTP anyway
    console: bool = True
    session_idle: float = 1800.0  # a console session unused this long (seconds) is signed out
    session_max: float = 43200.0  # and any session this long (seconds) after its sign-in
    allowed_hosts: tuple[str, ...] = ()  # names in Host it answers for, besides IPs and localhost


@dataclass(frozen=True, slots=True)
class Config:
    source: str  # the file it came from, or "<defaults>"
    master_key: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    prices: dict[str, Any] = field(default_factory=dict)  # model (or glob) -> USD per million tokens
    user_limits: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # user -> rpm/tpm/max_parallel/budget
    providers: tuple[ProviderConfig, ...] = ()
    models: tuple[ModelAlias, ...] = ()
    server: ServerConfig = field(default_factory=ServerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    demo: bool = False
