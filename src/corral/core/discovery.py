"""Background discovery: ask each provider which models it serves and update the catalog.

Runs off the request path on an interval. A provider that fails keeps its last known
catalog; its error is kept (without secrets) for /readyz and logs. A provider that ``skip``
names (its requests in flight make progress, and a listing could disturb them) is not asked
then and keeps its last catalog. What a provider may list is bounded: its answer by
``upstream.LISTING_BYTES`` (the provider reads it), the models in it by ``MAX_MODELS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from corral.conversation.call import ModelInfo
from corral.errors import CorralError
from corral.providers.base import Provider
from corral.routing.catalog import Catalog

log = logging.getLogger("corral.discovery")
MAX_MODELS = 10_000  # per provider: a hostile or broken upstream cannot fill the catalog


@dataclass(slots=True)
class ProviderStatus:
    checked_at: float | None = None
    ok: bool = False
    error: str | None = None
    models: int = 0


class Discovery:
    def __init__(
        self,
        catalog: Catalog,
        providers: Mapping[str, Provider],
        static: Mapping[str, tuple[str, ...] | None],
        *,
        interval: float,
        timeout: float,
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._static = static
        self._interval = interval
        self._timeout = timeout
        self._skip = skip
        self.status: dict[str, ProviderStatus] = {name: ProviderStatus() for name in providers}
        self.first_round = asyncio.Event()

    async def refresh_all(self) -> None:
        await asyncio.gather(*(self.refresh(name) for name in self._providers))
        self.first_round.set()

    async def refresh(self, name: str) -> None:
        status = self.status[name]
        static = self._static.get(name)
        if static is not None:
            models = [ModelInfo(id=m, owned_by=name) for m in static]
            self._catalog.update(name, models)
            status.checked_at, status.ok, status.error, status.models = time.time(), True, None, len(models)
            return
        if self._skip is not None and self._skip(name):
            return  # busy and progressing: keep the last catalog
        try:
            async with asyncio.timeout(self._timeout):
                models = await self._providers[name].list_models()
        except CorralError as exc:
            self._failed(name, exc.message)
        except TimeoutError:
            self._failed(name, f"Upstream '{name}' did not list its models within {self._timeout:g} s")
        else:
            if len(models) > MAX_MODELS:
                self._failed(
                    name,
                    f"Upstream '{name}' listed {len(models)} models; corral keeps at most {MAX_MODELS} "
                    "per provider. List the ones to serve under providers[].models.",
                )
                return
            self._catalog.update(name, models)
            status.checked_at, status.ok, status.error, status.models = time.time(), True, None, len(models)

    def _failed(self, name: str, message: str) -> None:
        status = self.status[name]
        if status.ok or status.error != message:
            log.warning("discovery failed: %s", message)
        status.checked_at, status.ok, status.error = time.time(), False, message

    async def run(self) -> None:
        while True:
            try:
                await self.refresh_all()
            except Exception:  # a bug must not stop discovery for good
                log.exception("discovery round failed")
            await asyncio.sleep(self._interval)
