"""The composition root: builds providers, catalog, fleet, engine, discovery and health checks
from a Config, and swaps them live when the config changes.

Nothing here is global: ``Gateway.create`` builds a fresh set, so tests can run several
gateways in one process. ``reconfigure`` keeps every provider whose settings did not change
(its connection pool, health state, discovered models, and the requests waiting for its slots,
which a slot freed through the old or the new fleet serves in order) and closes replaced ones
only after their in-flight requests have finished. The retry budget carries over too.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.config.provider_types import REGISTRY
from corral.config.schema import Config, ProviderConfig
from corral.core.catalog import Catalog, ProviderEntry
from corral.core.discovery import Discovery
from corral.core.engine import Engine
from corral.providers.base import Provider
from corral.providers.demo import DemoProvider
from corral.routing import affinity
from corral.routing.budget import RetryBudget
from corral.routing.capabilities import ModelFacts
from corral.routing.fit import Fit
from corral.routing.fleet import Fleet
from corral.routing.health import HealthMonitor
from corral.routing.state import DeploymentState
from corral.tasks import stop_tasks

log = logging.getLogger("corral.gateway")


class SharedState(Protocol):
    """What the gateway keeps of ``corral.cluster.node.Cluster`` (which sits above it)."""

    def wire(self, gw: Gateway) -> None: ...

    async def view(self) -> dict[str, Any]: ...


DRAIN_LIMIT = 600.0  # seconds a replaced provider may keep serving in-flight requests


@dataclass(frozen=True, slots=True)
class SlotShare:
    """This worker's part of every provider's ``max_parallel`` when ``workers`` processes serve
    with nothing shared between them: the slots are split (the first ``max_parallel % workers``
    workers get one more), so together they never send more than ``max_parallel`` to an
    instance. A share that would be 0 is 1 (``corral.control.workers`` refuses such a config
    at start; a provider added later through the API gets a warning in the log)."""

    index: int = 0
    workers: int = 1

    def of(self, name: str, max_parallel: int) -> int:
        if self.workers <= 1 or max_parallel <= 0:
            return max_parallel
        share = max_parallel // self.workers + (1 if self.index < max_parallel % self.workers else 0)
        if share == 0:
            log.warning(
                "provider %s: max_parallel %d is below the %d workers, so together they may send up to "
                "%d requests at once. Set redis_url to share the slots, or raise max_parallel.",
                name, max_parallel, self.workers, self.workers,
            )  # fmt: skip
        return max(1, share)


def build_provider(cfg: ProviderConfig) -> Provider:
    """The provider ``cfg`` configures, built by its type's adapter (``provider_types.REGISTRY``)."""
    module, _, name = REGISTRY[cfg.type].adapter.partition(":")
    factory: Callable[[ProviderConfig], Provider] = getattr(importlib.import_module(module), name)
    return factory(cfg)


@dataclass
class Gateway:
    config: Config
    catalog: Catalog
    engine: Engine
    discovery: Discovery
    health: HealthMonitor
    fleet: Fleet
    providers: dict[str, Provider]
    slots: SlotShare = field(default_factory=SlotShare)
    cluster: SharedState | None = None  # shared state across workers (corral.cluster), with redis_url
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _running: bool = False

    @classmethod
    def create(
        cls, config: Config, previous: Gateway | None = None, *, slots: SlotShare | None = None
    ) -> Gateway:
        """Build every part, reusing ``previous``'s unchanged providers (and its ``slots``, the
        share of ``max_parallel`` this worker may use). Call inside a running loop."""
        slots = slots or (previous.slots if previous is not None else SlotShare())
        same = _unchanged(config, previous)
        providers: dict[str, Provider] = {}
        states: list[DeploymentState] = []
        for p in config.providers:
            old_state = previous.fleet.states.get(p.name) if previous and p.name in same else None
            state = old_state or DeploymentState(p.name, p.type, slots.of(p.name, p.max_parallel), p.enabled)
            states.append(state)
            if p.enabled:
                providers[p.name] = (
                    previous.providers[p.name] if previous and p.name in same else build_provider(p)
                )
        entries = [ProviderEntry(p.name, p.type, p.priority, p.enabled) for p in config.providers]
        static: dict[str, tuple[str, ...] | None] = {p.name: p.models for p in config.providers if p.enabled}
        if config.demo:
            providers["demo"] = (
                previous.providers["demo"] if previous and "demo" in previous.providers else DemoProvider()
            )
            entries.append(ProviderEntry("demo", "demo", 1000))
            static["demo"] = ("echo",)
            states.append(previous.fleet.states["demo"] if previous else DeploymentState("demo", "demo"))
        catalog = Catalog(entries, config.models, config.router.default_fallbacks)
        if previous is not None:
            for name in same | ({"demo"} if config.demo else set()):
                catalog.update(name, previous.catalog.models_of(name))
        fleet = Fleet(states, config.router, _budget(config, previous))
        facts = previous.engine.fit.facts if previous is not None and previous.engine.fit else ModelFacts()
        facts.configure(config.router.capabilities, config.router.context_length)
        health = HealthMonitor(providers, {n: fleet.states[n] for n in providers}, config.router)
        discovery = Discovery(
            catalog,
            providers,
            static,
            interval=config.server.discovery_interval,
            timeout=config.server.discovery_timeout,
            skip=health.leave_alone,  # not while its requests progress: a listing could cut them
            facts=facts,  # what the models can do, from /api/tags and /api/show
        )
        if previous is not None:
            for name in same:
                if name in previous.discovery.status:
                    discovery.status[name] = previous.discovery.status[name]
            if previous.discovery.first_round.is_set():
                discovery.first_round.set()
        timeouts = {p.name: p.first_token_timeout for p in config.providers}
        engine = Engine(catalog, providers, fleet, timeouts)
        aliases = {m.name: m for m in config.models}
        provider_ctx = {p.name: p.num_ctx for p in config.providers if p.num_ctx}
        engine.fit = Fit(facts, fleet.states, aliases, provider_ctx, config.router.context_window_fallbacks)
        engine.affinity = affinity.build(
            config.router.affinity, aliases, previous.engine.affinity if previous else None
        )
        gateway = cls(
            config=config,
            catalog=catalog,
            engine=engine,
            discovery=discovery,
            health=health,
            fleet=fleet,
            providers=providers,
            slots=slots,
        )
        engine.on_missing_model = gateway.refresh_soon
        if previous is not None and previous.cluster is not None:
            previous.cluster.wire(gateway)  # the new parts share state as the old ones did
        return gateway

    async def start(self) -> None:
        """Start background work. Serving does not wait for discovery."""
        self._running = True
        self._start_loops()

    def _start_loops(self) -> None:
        self._tasks.append(asyncio.create_task(self.discovery.run(), name="corral-discovery"))
        self._tasks.append(asyncio.create_task(self.health.run(), name="corral-health"))

    async def reconfigure(self, config: Config) -> None:
        """Apply a new config now. Requests in flight finish on the parts they started with."""
        new = Gateway.create(config, previous=self)
        replaced = {n: p for n, p in self.providers.items() if new.providers.get(n) is not p}
        old_states = self.fleet.states
        # swap everything at once: no await between these assignments
        self.config, self.catalog, self.engine = new.config, new.catalog, new.engine
        self.discovery, self.health, self.fleet, self.providers = (
            new.discovery,
            new.health,
            new.fleet,
            new.providers,
        )
        self.engine.on_missing_model = self.refresh_soon
        if self._running:
            await self._stop_tasks()
            self._start_loops()
        for name, provider in replaced.items():
            state = old_states.get(name)
            self._tasks.append(asyncio.create_task(_drain_and_close(provider, state), name=f"close-{name}"))
        log.info("configuration applied: %d providers, %d aliases", len(config.providers), len(config.models))

    def refresh_soon(self, provider: str) -> None:
        """An instance said it lacks a model: refresh its catalog now, in the background."""
        if provider in self.providers and not any(
            t.get_name() == f"refresh-{provider}" and not t.done() for t in self._tasks
        ):
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(
                asyncio.create_task(self.discovery.refresh(provider), name=f"refresh-{provider}")
            )

    def share_pins(self, url: str, prefix: str) -> None:
        """Share session-affinity pins with every worker and replica on this Redis and prefix."""
        if self.engine.affinity is not None and self.engine.affinity.pins.shared is None:
            affinity.SharedPins(self.engine.affinity.pins, url, prefix).start()

    async def _stop_tasks(self) -> None:
        loops = [t for t in self._tasks if t.get_name() in ("corral-discovery", "corral-health")]
        await stop_tasks(loops)
        self._tasks = [t for t in self._tasks if t not in loops and not t.done()]

    async def close(self) -> None:
        self._running = False  # a reconfigure from now on starts no loops
        shared = self.engine.affinity.pins.shared if self.engine.affinity is not None else None
        if shared is not None:
            await shared.close()
        await stop_tasks(self._tasks)
        self._tasks.clear()
        await asyncio.gather(*(p.close() for p in self.providers.values()), return_exceptions=True)


def _unchanged(config: Config, previous: Gateway | None) -> set[str]:
    """Providers whose settings are identical to ``previous``'s and that it has running."""
    if previous is None:
        return set()
    before = {p.name: p for p in previous.config.providers}
    return {p.name for p in config.providers if before.get(p.name) == p and p.name in previous.providers}


def _budget(config: Config, previous: Gateway | None) -> RetryBudget | None:
    """The retry budget carries over (with the new limits): it counts requests of both engines."""
    if previous is None:
        return None
    budget = previous.fleet.budget
    budget.percent, budget.minimum = config.router.retry_budget_percent, config.router.retry_budget_min
    return budget


async def _drain_and_close(provider: Provider, state: DeploymentState | None) -> None:
    deadline = time.monotonic() + DRAIN_LIMIT
    while state is not None and state.in_flight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)  # bounded, in the background, only while a replaced provider drains
    await provider.close()
