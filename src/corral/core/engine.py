"""The engine: resolve a call's model to a target and send it to that target's provider."""

from __future__ import annotations

from collections.abc import Mapping

from corral.core.call import Call, Reply, Target
from corral.core.catalog import Catalog
from corral.errors import UpstreamError
from corral.providers.base import Provider


class Engine:
    def __init__(self, catalog: Catalog, providers: Mapping[str, Provider]) -> None:
        self.catalog = catalog
        self.providers = providers

    async def handle(self, call: Call) -> Reply:
        targets = self.catalog.resolve(call.model)
        return await self.send(call, targets[0])

    async def send(self, call: Call, target: Target) -> Reply:
        provider = self.providers.get(target.provider)
        if provider is None:  # an alias to a provider that was removed: a config race, not a client error
            raise UpstreamError(target.provider, "is not configured any more.")
        reply = await provider.send(call, target.model)
        reply.headers["x-corral-provider"] = target.provider
        reply.headers["x-corral-model"] = target.model
        return reply
