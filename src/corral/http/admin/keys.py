"""/admin/keys: issue, list, read, PATCH and revoke gateway keys.

The full key is returned once, by POST; afterwards only its id and settings are shown (never
the key or its hash). Limits are flat fields (rpm, tpm, max_parallel, max_budget,
budget_period). Writes go through the key repository, which updates the in-memory key cache
as soon as they commit: a revoked key fails on the very next request. A gateway of several
workers without Redis refuses (409) an enabled key with limits, which each worker would count
apart (``corral.control.workers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from corral.control.workers import limits_refusal
from corral.http.admin.context import AdminContext, listing, reply
from corral.http.admin.input import (
    key_id,
    query_text,
    read_object,
    reject_unknown,
    reject_unknown_query,
    text,
    timestamp,
)
from corral.store.keys import LIMITS, KeyRecord

FIELDS = ("name", "owner", "scope", "models", "expires_at", "enabled", "tier", "metadata", *LIMITS)


def key_view(record: KeyRecord) -> dict[str, Any]:
    """The admin view with the limits as flat fields (null when unset)."""
    view = record.view()
    limits = view.pop("limits")
    for name in LIMITS:
        view[name] = limits.get(name)
    return view


def _fields(body: dict[str, Any], current_limits: dict[str, Any] | None) -> dict[str, Any]:
    """The repository's keyword fields from a request body (validated further there)."""
    reject_unknown(body, FIELDS, "key")
    for name in ("name", "owner"):
        text(body, name, 256)
    out = {k: v for k, v in body.items() if k not in LIMITS}
    if "expires_at" in out and out["expires_at"] is not None:
        out["expires_at"] = timestamp(out["expires_at"], "expires_at")
    given = {k: v for k, v in body.items() if k in LIMITS}
    if given:
        limits = dict(current_limits or {})
        for name, value in given.items():
            if value is None:
                limits.pop(name, None)
            else:
                limits[name] = value
        out["limits"] = limits
    return out


class KeyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def create(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)  # admin scope: only the master key or admin keys issue keys
        plane = self._ctx.plane(request)
        body = await read_object(request)
        reject_unknown(body, FIELDS, "key")
        fields = _fields({k: v for k, v in body.items() if v is not None or k in LIMITS}, None)
        scope = fields.pop("scope", "user")
        self._fits_workers(request, fields.get("enabled", True), fields.get("limits", {}))
        issued = await plane.store.keys.create(actor=who.key_id, scope=scope, **fields)
        return reply({"key": issued.key, **key_view(issued.record)}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.plane(request)
        reject_unknown_query(request, ("owner",))
        owner = query_text(request, "owner", 256)
        return listing([key_view(r) for r in await plane.store.keys.list(owner=owner)])

    async def get(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.plane(request)
        return reply(key_view(await plane.store.keys.get_by_id(key_id(request))))

    async def update(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        ident = key_id(request)
        body = await read_object(request)
        async with self._ctx.lock:  # limits are merged: no lost update between two PATCHes
            record = await plane.store.keys.get_by_id(ident)
            fields = _fields(body, dict(record.limits))
            self._fits_workers(
                request, fields.get("enabled", record.enabled), fields.get("limits", record.limits)
            )
            updated = await plane.store.keys.update(ident, fields, actor=who.key_id)
        return reply(key_view(updated))

    def _fits_workers(self, request: web.Request, enabled: Any, limits: Any) -> None:
        """409 when the key would have limits and several workers count them apart: the
        workers that split slots apart (``slots.workers``) are those that share no limiter."""
        workers = self._ctx.gateway(request).slots.workers
        if enabled is False or not isinstance(limits, Mapping):
            return  # a disabled key counts nothing; a malformed one is refused by the store
        refused = limits_refusal(limits, workers)
        if refused is not None:
            raise refused

    async def delete(self, request: web.Request) -> web.Response:
        """Revoke: the key is deleted, and the cache forgets it before this returns."""
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        ident = key_id(request)
        await plane.store.keys.delete(ident, actor=who.key_id)
        return reply({"id": ident, "deleted": True})
