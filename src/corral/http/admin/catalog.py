"""/admin/catalog: the model catalog per provider (list, create, read, PATCH, delete, and a
bulk import from the provider's discovery).

Entries live in the database (``corral.store.catalog``); after every change made here the
running copy the request path prices from is reloaded (``corral.usage.catalog_sync``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from corral.errors import InvalidRequest
from corral.http.admin.catalog_import import discover, plan
from corral.http.admin.context import AdminContext, listing, reply
from corral.http.admin.input import query_text, read_object, reject_unknown, reject_unknown_query
from corral.store.catalog import FIELDS, CatalogRepo
from corral.store.errors import Missing

log = logging.getLogger("corral.catalog")
MAX_PROVIDER = 128
MAX_MODEL = 256


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
        sync = self._ctx.parts.catalog_sync
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
