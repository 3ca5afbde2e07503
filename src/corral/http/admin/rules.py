"""/admin/rules: routing rules by power level and tier (routing/rules.py).

Rules from the YAML file (``router.rules``) are listed (``"managed_by": "config"``) and
read-only; the others live in the database. A new rule is validated with the whole config (its
level, its model routable and not explicit_only, as fallback chains are) before it is written,
and applied to the running gateway at once; every write is audited. A rule is changed by
deleting it and creating another.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from corral.control.merge import merge
from corral.errors import ConfigError
from corral.http.admin import changes
from corral.http.admin.context import AdminContext, listing, reply
from corral.http.admin.input import from_config_error, read_object, reject_unknown
from corral.store.errors import Missing
from corral.store.rules import RuleRecord

FIELDS = ("level", "tier", "model", "priority", "weight")


class RuleRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        base = self._ctx.base_config(request)
        rows: list[dict[str, Any]] = [
            {
                "id": None,
                "level": r.level,
                "tier": r.tier,
                "model": r.model,
                "priority": r.priority,
                "weight": r.weight,
                "created_at": None,
                "managed_by": "config",
            }
            for r in base.router.rules
        ]
        plane = self._ctx.parts.control
        if plane is not None:
            rows += [{**r.view(), "managed_by": "api"} for r in await plane.store.rules.list()]
        return listing(rows)

    async def create(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        body = await read_object(request)
        reject_unknown(body, FIELDS, "rule")
        gateway = self._ctx.gateway(request)
        store = plane.store.rules
        async with self._ctx.lock:
            providers, aliases = await changes.stored(plane)
            stored = [r.spec() for r in await store.list()]
            try:
                config = merge(plane.base, providers, aliases, [*stored, body])
            except ConfigError as exc:
                raise from_config_error(exc) from None
            rule = config.router.rules[-1]  # the new one, validated and with its defaults
            made: list[RuleRecord] = []

            async def write() -> RuleRecord:
                made.append(
                    await store.create(
                        level=rule.level,
                        tier=rule.tier,
                        model=rule.model,
                        priority=rule.priority,
                        weight=rule.weight,
                        actor=who.key_id,
                    )
                )
                return made[0]

            record = await changes.write_and_apply(
                plane, gateway, write, lambda: store.delete(made[0].id, actor=who.key_id)
            )
        return reply({**record.view(), "managed_by": "api"}, status=201)

    async def delete(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        rule_id = request.match_info["id"]
        if not rule_id or len(rule_id) > 32:
            raise Missing("rule", rule_id[:32])
        gateway = self._ctx.gateway(request)
        store = plane.store.rules
        async with self._ctx.lock:
            before = next((r for r in await store.list() if r.id == rule_id), None)
            if before is None:
                raise Missing("rule", rule_id)
            spec = before.spec()
            await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.delete(rule_id, actor=who.key_id),
                lambda: store.create(**spec, actor=who.key_id),
            )
        return reply({"id": rule_id, "deleted": True})
