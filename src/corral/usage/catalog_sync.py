"""The model catalog's running copy: what the request path prices from and lists.

Entries live in the database (``corral.store.catalog``). ``CatalogSync`` loads them into the
accountant's ``PriceTable`` (catalog prices first, then ``prices:``) and the model listings:
at start, after every change made through the admin API, and every ``SYNC_INTERVAL`` seconds
for changes made by other replicas. Serving a request never reads the database for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from corral.store.catalog import CatalogRecord, CatalogRepo
from corral.tasks import stop_tasks
from corral.usage.prices import CatalogModel, CatalogSnapshot, PriceTable, catalog_price

log = logging.getLogger("corral.catalog")
SYNC_INTERVAL = 15.0


def snapshot_of(records: list[CatalogRecord]) -> CatalogSnapshot:
    return CatalogSnapshot(
        CatalogModel(
            provider=r.provider,
            model=r.model,
            display_name=r.display_name,
            enabled=r.enabled,
            price=catalog_price(r.model, r.input_price, r.output_price),
            capabilities=r.capabilities,
            context_length=r.context_length,
        )
        for r in records
    )


class CatalogSync:
    """Keeps ``prices.catalog`` equal to the stored catalog."""

    def __init__(self, repo: CatalogRepo, prices: PriceTable) -> None:
        self.repo = repo
        self.prices = prices

    async def reload(self) -> None:
        self.prices.use_catalog(snapshot_of(await self.repo.list()))

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception as exc:  # keep serving with the last catalog
                log.warning("could not reload the model catalog: %s", exc)

    @contextlib.asynccontextmanager
    async def running(self, interval: float = SYNC_INTERVAL) -> AsyncIterator[CatalogSync]:
        """Load the catalog now, refresh it in the background until exit."""
        try:
            await self.reload()
        except Exception as exc:
            log.warning("could not load the model catalog (costs use prices: only until it loads): %s", exc)
        tasks = [asyncio.create_task(self.run(interval), name="catalog-sync")]
        try:
            yield self
        finally:
            await stop_tasks(tasks)
