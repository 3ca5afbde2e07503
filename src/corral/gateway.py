"""The composition root: builds providers, catalog, engine and discovery from a Config.

Nothing here is global: ``Gateway.create`` builds a fresh set, so tests can run several
gateways in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from corral.config.schema import Config, ProviderConfig
from corral.core.catalog import Catalog, ProviderEntry
from corral.core.discovery import Discovery
from corral.core.engine import Engine
from corral.providers.base import Provider
from corral.providers.demo import DemoProvider
from corral.providers.ollama.provider import OllamaProvider
from corral.providers.openai_compat import OpenAIProvider
from corral.routing.fleet import Fleet
from corral.routing.health import HealthMonitor
from corral.routing.state import DeploymentState


def build_provider(cfg: ProviderConfig) -> Provider:
    if cfg.type == "ollama":
        return OllamaProvider(cfg)
    if cfg.type == "openai":
        return OpenAIProvider(cfg)
    raise ValueError(f"unknown provider type {cfg.type!r}")


@dataclass
class Gateway:
    config: Config
    catalog: Catalog
    engine: Engine
    discovery: Discovery
    health: HealthMonitor
    fleet: Fleet
    providers: dict[str, Provider]
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def create(cls, config: Config) -> Gateway:
        """Build every part. Call inside a running event loop (HTTP clients need one)."""
        enabled = [p for p in config.providers if p.enabled]
        providers: dict[str, Provider] = {p.name: build_provider(p) for p in enabled}
        entries = [ProviderEntry(p.name, p.type, p.priority, p.enabled) for p in config.providers]
        static: dict[str, tuple[str, ...] | None] = {p.name: p.models for p in enabled}
        if config.demo:
            providers["demo"] = DemoProvider()
            entries.append(ProviderEntry("demo", "demo", 1000))
            static["demo"] = ("echo",)
        catalog = Catalog(entries, config.models, config.router.default_fallbacks)
        discovery = Discovery(
            catalog,
            providers,
            static,
            interval=config.server.discovery_interval,
            timeout=config.server.discovery_timeout,
        )
        states = [DeploymentState(p.name, p.type, p.max_parallel, p.enabled) for p in config.providers]
        if config.demo:
            states.append(DeploymentState("demo", "demo"))
        fleet = Fleet(states, config.router)
        timeouts = {p.name: p.first_token_timeout for p in config.providers}
        engine = Engine(catalog, providers, fleet, timeouts)
        health = HealthMonitor(providers, {n: fleet.states[n] for n in providers}, config.router)
        gateway = cls(
            config=config,
            catalog=catalog,
            engine=engine,
            discovery=discovery,
            health=health,
            fleet=fleet,
            providers=providers,
        )
        engine.on_missing_model = gateway.refresh_soon
        return gateway

    async def start(self) -> None:
        """Start background work. Serving does not wait for discovery."""
        self._tasks.append(asyncio.create_task(self.discovery.run(), name="corral-discovery"))
        self._tasks.append(asyncio.create_task(self.health.run(), name="corral-health"))

    def refresh_soon(self, provider: str) -> None:
        """An instance said it lacks a model: refresh its catalog now, in the background."""
        if provider in self.providers and not any(
            t.get_name() == f"refresh-{provider}" and not t.done() for t in self._tasks
        ):
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(
                asyncio.create_task(self.discovery.refresh(provider), name=f"refresh-{provider}")
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.gather(*(p.close() for p in self.providers.values()), return_exceptions=True)
