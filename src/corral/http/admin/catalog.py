"""/admin/catalog: the model catalog per provider (list, create, read, PATCH, delete, and a
bulk import from the provider's discovery), and its in-memory copy for the request path.

Entries live in the database (``corral.store.catalog``). ``CatalogSync`` loads them into the
accountant's ``PriceTable`` (catalog prices first, then ``prices:``) and the model listings:
at start, after every change made here, and every ``SYNC_INTERVAL`` seconds for changes made
by other replicas. Serving a request never reads the database for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from corral.errors import InvalidRequest
from corral.http.admin.catalog_import import discover, plan
from corral.http.admin.context import AdminContext, listing, reply
from corral.http.admin.input import query_text, read_object, reject_unknown, reject_unknown_query
from corral.store.catalog import FIELDS, CatalogRecord, CatalogRepo
from corral.store.errors import Missing
from corral.tasks import stop_tasks
from corral.usage.prices import CatalogModel, CatalogSnapshot, PriceTable, catalog_price

log = logging.getLogger("corral.catalog")
SYNC_INTERVAL = 15.0
MAX_PROVIDER = 128
MAX_MODEL = 256


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


SYNC = web.AppKey("catalog_sync", CatalogSync)


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Load the catalog once the control plane and the accountant exist; refresh it in the
    background; stop before they close."""
    from corral.http.app import CONTROL
    from corral.http.serving import ACCOUNTANT

    plane, accountant = app.get(CONTROL), app.get(ACCOUNTANT)
    tasks: list[asyncio.Task[None]] = []
    if plane is not None and accountant is not None:
        sync = CatalogSync(plane.store.catalog, accountant.prices)
        app[SYNC] = sync
        try:
            await sync.reload()
        except Exception as exc:
            log.warning("could not load the model catalog (costs use prices: only until it loads): %s", exc)
        tasks.append(asyncio.create_task(sync.run(SYNC_INTERVAL), name="catalog-sync"))
    try:
        yield
    finally:
        await stop_tasks(tasks)


def _key(request: web.Request) -> tuple[str, str]:
    provider, model = request.match_info["provider"], request.match_info["model"]
    if not 0 < len(provider) <= MAX_PROVIDER or not 0 < len(model) <= MAX_MODEL:
        raise Missing("catalog entry", f"{provider[:MAX_PROVIDER]}/{model[:MAX_MODEL]}")
    return provider, model


class CatalogRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    def _repo(self, request: web.Request) -> CatalogRepo:
        return self._ctx.plane(request).store.catalog

    async def _changed(self, request: web.Request) -> None:
        sync = request.app.get(SYNC)
        if sync is not None:
            await sync.reload()

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        reject_unknown_query(request, ("provider",))
        provider = query_text(request, "provider", MAX_PROVIDER)
        if provider == "":
            raise InvalidRequest("'provider' must name a provider (or be left out).", param="provider")
        return listing([r.view() for r in await self._repo(request).list(provider)])

    async def get(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        provider, model = _key(request)
        return reply((await self._repo(request).get(provider, model)).view())

    async def create(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        repo = self._repo(request)
        body = await read_object(request)
        reject_unknown(body, ("provider", "model", *FIELDS), "catalog entry")
        provider, model = body.get("provider"), body.get("model")
        for name, value, limit in (("provider", provider, MAX_PROVIDER), ("model", model, MAX_MODEL)):
            if not isinstance(value, str) or not value or len(value) > limit:
                raise InvalidRequest(
                    f"'{name}' is required: a string of at most {limit} characters.", param=name
                )
        assert isinstance(provider, str) and isinstance(model, str)
        fields = {k: v for k, v in body.items() if k in FIELDS}
        record = await repo.create(provider, model, fields, actor=who.key_id)
        await self._changed(request)
        return reply(record.view(), status=201)

    async def update(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        provider, model = _key(request)
        repo = self._repo(request)
        body = await read_object(request)
        reject_unknown(body, ("provider", "model", *FIELDS), "catalog entry")
        record = await repo.update(provider, model, body, actor=who.key_id)
        await self._changed(request)
        return reply(record.view())

    async def delete(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        provider, model = _key(request)
        await self._repo(request).delete(provider, model, actor=who.key_id)
        await self._changed(request)
        return reply({"name": f"{provider}/{model}", "deleted": True})

    async def import_(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        repo = self._repo(request)
        body = await read_object(request)
        reject_unknown(body, ("provider", "dry_run"), "catalog import")
        name, dry_run = body.get("provider"), body.get("dry_run", False)
        if not isinstance(name, str) or not name or len(name) > MAX_PROVIDER:
            raise InvalidRequest(
                "'provider' is required: the name of a provider to import from.", param="provider"
            )
        if not isinstance(dry_run, bool):
            raise InvalidRequest("'dry_run' must be true or false.", param="dry_run")
        found, failed = await discover(self._ctx.gateway(request), name)
        async with self._ctx.lock:
            result = plan(name, found, await repo.list(name), failed)
            if not dry_run:
                await repo.upsert_many(name, result.writes(), actor=who.key_id)
        if not dry_run:
            await self._changed(request)
        out: dict[str, Any] = result.view(dry_run=dry_run)
        return reply(out)
