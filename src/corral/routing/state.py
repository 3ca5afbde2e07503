"""The live state of one deployment (a provider instance): load, health, ejection, warm models,
the signs of life of its requests in flight, and the requests waiting for one of its slots.

Health has two levels: the instance (down, busy, misconfigured) and each model on it
(``ModelHealth``: a missing model or a model-specific 500 ejects that model here, on the same
back-off as an instance, while the instance's other models keep serving). Both levels call the
``observer`` on an ejection or a recovery, so with ``redis_url`` every worker shares them
(corral.cluster.health). The times to first
token per model (``first_tokens``, routing/deadlines.py) give each attempt its deadline.

Updated from live traffic (passive) and from background checks (active). Reading it is cheap
and does no I/O, so routing decisions on the request path stay in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.config.provider_types import REGISTRY
from corral.config.schema import RouterConfig
from corral.routing.deadlines import DeadlinePolicy, FirstTokens

HEALTHY, BUSY, EJECTED, MISCONFIGURED, DISABLED, UNKNOWN = (
    "healthy", "busy", "ejected", "misconfigured", "disabled", "unknown",
)  # fmt: skip
MAX_MODEL_HEALTH = 256  # models with a failure on record, per deployment


@dataclass(slots=True)
class ModelHealth:
    """One model's failures on one deployment."""

    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # monotonic
    last_error: str | None = None
    changed_at: float = 0.0  # wall clock of its last ejection or recovery: the newest view wins


@dataclass(slots=True)
class DeploymentState:
    name: str
    type: str
    max_parallel: int = 0  # 0 = no cap
    enabled: bool = True
    in_flight: int = 0
    ewma_ms: float | None = None
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0  # monotonic
    trial_in_flight: bool = False
    busy_until: float = 0.0
    misconfigured: str | None = None
    last_error: str | None = None
    last_check: float | None = None  # wall clock
    last_check_ok: bool | None = None
    check_latency_ms: float | None = None
    loaded: dict[str, int | None] = field(default_factory=dict)  # model -> context length (Ollama /api/ps)
    running: tuple[dict[str, Any], ...] = ()  # the /api/ps entries, for the merged /api/ps
    version: str | None = None
    requests: int = 0
    failures: int = 0
    # signs of life of the requests in flight (monotonic), so active checks can leave it alone
    last_progress: float = 0.0  # a chunk arrived (written per chunk by the stream relay)
    first_byte_due: float = 0.0  # the latest deadline of a request here for its first token or its reply
    # requests waiting for a slot here (see Fleet): on the state, so fleets that share it share them
    waiters: deque[asyncio.Future[str | None]] = field(default_factory=deque, repr=False, compare=False)
    waiting: int = 0  # live ones among ``waiters``
    models: dict[str, ModelHealth] = field(default_factory=dict, repr=False, compare=False)
    first_tokens: FirstTokens = field(default_factory=FirstTokens, repr=False, compare=False)
    # told of each health transition (ejection, busy back-off, recovery, check): corral.cluster
    observer: Callable[[DeploymentState], None] | None = field(default=None, repr=False, compare=False)
    fleet_full_until: float = 0.0  # monotonic: the fleet-wide max_parallel was full (corral.cluster)

    def status(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if not self.enabled:
            return DISABLED
        if self.misconfigured:
            return MISCONFIGURED
        if self.ejected_until > now:
            return EJECTED
        if self.busy_until > now or (self.max_parallel and self.in_flight >= self.max_parallel):
            return BUSY
        if self.last_check_ok is None and self.requests == 0:
            return UNKNOWN
        return HEALTHY

    def routable(self, now: float) -> bool:
        """May take a request now: not disabled or misconfigured, not ejected (an expired
        ejection admits exactly one trial request at a time)."""
        if not self.enabled or self.misconfigured:
            return False
        if self.ejected_until > now:
            return False
        return not (self.ejections and self.consecutive_failures and self.trial_in_flight)

    def has_capacity(self) -> bool:
        return not self.max_parallel or self.in_flight < self.max_parallel

    def is_busy(self, now: float) -> bool:
        return self.busy_until > now

    def progressing(self, now: float, window: float) -> bool:
        """Requests are in flight and evidently alive: a chunk arrived within ``window`` s, or
        one still waits within its deadline for its first token (a stream) or its reply (the
        engine, the request's own timeout, watches that one). Passive health covers such a
        deployment; an active check would only disturb it."""
        return self.in_flight > 0 and (now - self.last_progress <= window or now < self.first_byte_due)

    def expect_first_byte(self, due: float) -> None:
        """A request was sent here: its first token (a stream) or its reply is due by ``due``."""
        if due > self.first_byte_due:
            self.first_byte_due = due

    def load(self) -> float:
        """In flight over capacity (an uncapped deployment counts as capacity 8)."""
        return self.in_flight / (self.max_parallel or 8)

    def warm(self, model: str, num_ctx: int | None) -> bool | None:
        """Is ``model`` loaded here (with ``num_ctx``, when given)? None when unknown (not Ollama)."""
        kind = REGISTRY.get(self.type)
        if kind is None or not kind.reports_loaded:
            return None
        name = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
        if name not in self.loaded:
            return False
        return num_ctx is None or self.loaded[name] in (None, num_ctx)

    def model_usable(self, model: str, now: float) -> bool:
        """``model`` is not ejected here (the instance itself: ``routable``)."""
        health = self.models.get(self.model_key(model)) if self.models else None
        return health is None or health.ejected_until <= now

    def model_key(self, model: str) -> str:
        """Ollama's name for ``model`` (``llama3.2`` is ``llama3.2:latest``), others' as given."""
        if self.type != "ollama" or ":" in model.rsplit("/", 1)[-1]:
            return model
        return f"{model}:latest"

    def first_token_deadline(
        self,
        model: str,
        num_ctx: int | None,
        fixed: float,
        policy: DeadlinePolicy,
        now: float,
        elsewhere: bool = True,
        size: int = 0,
    ) -> tuple[float, bool | None]:
        """The first-token deadline of an attempt of ``model`` here, and whether it is warm
        (loaded per /api/ps, or a stream of it started here within the last minute: /api/ps
        is only as fresh as the last health check); None: the upstream does not say.
        ``elsewhere``: another deployment could still be tried after this one; ``size``: the
        request body's bytes (a longer prompt takes longer to its first token)."""
        warm = self.warm(model, num_ctx)
        if warm is not True and self.first_tokens.recent(model, now):
            warm = True
        return self.first_tokens.deadline(model, warm, fixed, policy, elsewhere, size), warm

    # passive signals -------------------------------------------------------------------
    def start(self, now: float) -> bool:
        """Count a request in; True if it is the single trial of an expired ejection."""
        self.in_flight += 1
        self.requests += 1
        if (
            self.ejections
            and self.consecutive_failures
            and self.ejected_until <= now
            and not self.trial_in_flight
        ):
            self.trial_in_flight = True
            return True
        return False

    def finish(self, trial: bool = False) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if trial:  # a trial that ended without a verdict (client error, 404, cancelled) frees the next one
            self.trial_in_flight = False

    def record_success(self, latency_ms: float) -> None:
        if self.observer is not None and (self.consecutive_failures or self.ejected_until):
            self.observer(self)  # a recovery (the observer reads the fields later, off this path)
        self.consecutive_failures = 0
        self.trial_in_flight = False
        self.ejected_until = 0.0
        self.misconfigured = None
        self.ewma_ms = latency_ms if self.ewma_ms is None else 0.8 * self.ewma_ms + 0.2 * latency_ms

    def record_failure(self, now: float, reason: str, cfg: RouterConfig, *, eject_now: bool = False) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = reason
        trial = self.trial_in_flight
        self.trial_in_flight = False
        if self.ejected_until > now and not trial:
            return  # already ejected: late failures from before the ejection do not lengthen it
        if trial or eject_now or self.consecutive_failures >= cfg.eject_after:
            self.eject(now, cfg)

    def eject(self, now: float, cfg: RouterConfig) -> None:
        self.ejections += 1
        backoff = min(cfg.eject_base * (2 ** (self.ejections - 1)), cfg.eject_max)
        self.ejected_until = now + backoff
        if self.observer is not None:
            self.observer(self)

    def record_model_failure(self, model: str, now: float, reason: str, cfg: RouterConfig) -> None:
        """``model`` failed here in a way the instance's other models do not share: eject the
        model alone (backing off as an instance does); the instance itself is not marked."""
        self.trial_in_flight = False
        model = self.model_key(model)
        health = self.models.get(model)
        if health is None:
            if len(self.models) >= MAX_MODEL_HEALTH:
                del self.models[min(self.models, key=lambda m: self.models[m].ejected_until)]
            health = self.models[model] = ModelHealth()
        health.failures += 1
        health.last_error = reason
        if health.ejected_until > now:
            return  # late failures from before the ejection do not lengthen it
        health.ejections += 1
        health.ejected_until = now + min(cfg.eject_base * (2 ** (health.ejections - 1)), cfg.eject_max)
        health.changed_at = time.time()
        if self.observer is not None:
            self.observer(self)  # shared with the other workers (corral.cluster.health)

    def model_view(self, now: float) -> dict[str, dict[str, Any]]:
        """The models with a failure on record here (for /admin/health): state, back-off, error."""
        out: dict[str, dict[str, Any]] = {}
        for model, health in list(self.models.items()):
            left = max(0.0, health.ejected_until - now)
            out[model] = {
                "state": EJECTED if left else HEALTHY,
                "ejected_for_s": round(left, 1) if left else None,
                "failures": health.failures,
                "last_error": health.last_error,
                # when it was last marked failed or recovered (ISO 8601, UTC)
                "since": _iso(health.changed_at) if health.changed_at else None,
            }
        return out

    def record_model_success(self, model: str) -> None:
        if self.models:
            health = self.models.get(self.model_key(model))
            if health is not None and (health.ejections or health.ejected_until):
                health.ejections = 0
                health.ejected_until = 0.0
                health.changed_at = time.time()
                if self.observer is not None:
                    self.observer(self)  # a recovery, shared as the ejection was

    def record_busy(self, now: float, seconds: float) -> None:
        self.trial_in_flight = False
        self.busy_until = max(self.busy_until, now + seconds)
        if self.observer is not None:
            self.observer(self)

    def record_misconfigured(self, reason: str) -> None:
        self.trial_in_flight = False
        self.misconfigured = reason
        self.last_error = reason
        if self.observer is not None:
            self.observer(self)

    # active checks ---------------------------------------------------------------------
    def record_check(self, ok: bool, latency_ms: float | None, error: str | None) -> None:
        self.last_check = time.time()
        self.last_check_ok = ok
        self.check_latency_ms = latency_ms
        if self.observer is not None:
            self.observer(self)  # probe results go to the workers that do not probe
        if ok:
            # As Envoy does: a passing active check brings an ejected deployment back.
            self.consecutive_failures = 0
            self.ejected_until = 0.0
            self.ejections = 0
            self.trial_in_flight = False
            self.misconfigured = None
        else:
            self.last_error = error


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="seconds")
