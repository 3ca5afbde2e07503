"""/admin/aliases: model aliases with their targets (one, or a pool), fallbacks, strategy,
explicit_only and pinned num_ctx.

Aliases from the YAML file are listed (``"managed_by": "config"``) and read-only; the others
live in the database. A change is validated as part of the whole config (targets name known
providers, fallback chains are routable and do not loop) before it is written, and applied to
the running gateway at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from corral.config.schema import Config, ModelAlias
from corral.errors import InvalidRequest
from corral.http.admin import changes
from corral.http.admin.context import AdminContext, Conflict, config_managed, listing, reply
from corral.http.admin.input import path_name, read_object, reject_unknown
from corral.store.access import check_name
from corral.store.errors import AlreadyExists, Missing

KIND = "alias"
MAX_NAME = 256
FIELDS = ("name", "target", "targets", "fallbacks", "explicit_only", "strategy", "num_ctx")


def config_view(alias: ModelAlias) -> dict[str, Any]:
    return {
        "name": alias.name,
        "targets": [{"target": t.target, "weight": t.weight, "priority": t.priority} for t in alias.targets],
        "fallbacks": list(alias.fallbacks),
        "explicit_only": alias.explicit_only,
        "strategy": alias.strategy,
        "num_ctx": alias.num_ctx,
        "created_at": None,
        "updated_at": None,
        "managed_by": "config",
    }


def with_one_target_field(changes_: dict[str, Any]) -> dict[str, Any]:
    """'target' and 'targets' are two spellings of one field: setting one clears the other."""
    out = dict(changes_)
    for given, other in (("target", "targets"), ("targets", "target")):
        if out.get(given) is not None and other not in out:
            out[other] = None
    return out


class AliasRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.parts.control
        base = self._ctx.base_config(request)
        rows = [config_view(a) for a in base.models]
        if plane is not None:
            taken = {a.name for a in base.models}
            for record in await plane.store.aliases.list():
                if record.name not in taken:
                    rows.append({**record.view(), "managed_by": "api"})
        return listing(rows)

    async def get(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        name = path_name(request, KIND, MAX_NAME)
        plane = self._ctx.parts.control
        base = self._ctx.base_config(request)
        for alias in base.models:
            if alias.name == name:
                return reply(config_view(alias))
        if plane is None:
            raise Missing(KIND, name)
        record = await plane.store.aliases.get(name)
        return reply({**record.view(), "managed_by": "api"})

    async def create(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        body = await read_object(request)
        reject_unknown(body, FIELDS, "alias")
        name = check_name(KIND, body.get("name"), MAX_NAME)
        if name in plane.config_aliases:
            raise config_managed(KIND, name)
        spec = {k: v for k, v in body.items() if k != "name" and v is not None}
        gateway = self._ctx.gateway(request)
        store = plane.store.aliases
        async with self._ctx.lock:
            providers, aliases = await changes.stored(plane)
            if any(existing == name for existing, _ in aliases):
                raise AlreadyExists(KIND, name)
            changes.check(plane, providers, [*aliases, (name, spec)])
            record = await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.create(name, spec, actor=who.key_id),
                lambda: store.delete(name, actor=who.key_id),
            )
        return reply({**record.view(), "managed_by": "api"}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        name = path_name(request, KIND, MAX_NAME)
        if name in plane.config_aliases:
            raise config_managed(KIND, name)
        body = await read_object(request)
        reject_unknown(body, FIELDS, "alias")
        if "name" in body and body["name"] != name:
            raise InvalidRequest(
                "An alias cannot be renamed. Create it under the new name, then delete the old one.",
                param="name",
            )
        patch = with_one_target_field({k: v for k, v in body.items() if k != "name"})
        gateway = self._ctx.gateway(request)
        store = plane.store.aliases
        async with self._ctx.lock:
            before = (await store.get(name)).spec
            spec = {k: v for k, v in {**before, **patch}.items() if v is not None}
            providers, aliases = await changes.stored(plane)
            changes.check(plane, providers, [(n, spec if n == name else s) for n, s in aliases])
            undo = {**{k: None for k in patch if k not in before}, **before}
            record = await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.update(name, patch, actor=who.key_id),
                lambda: store.update(name, undo, actor=who.key_id),
            )
        return reply({**record.view(), "managed_by": "api"})

    async def delete(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        name = path_name(request, KIND, MAX_NAME)
        if name in plane.config_aliases:
            raise config_managed(KIND, name)
        gateway = self._ctx.gateway(request)
        store = plane.store.aliases
        async with self._ctx.lock:
            before = (await store.get(name)).spec
            providers, aliases = await changes.stored(plane)
            users = _references(changes.check(plane, providers, aliases), name)
            if users:
                raise Conflict(
                    f"The alias '{name}' is still used by {', '.join(users)}. Change those first, "
                    "then delete the alias.",
                    code="alias_in_use",
                    param="name",
                )
            changes.check(plane, providers, [(n, s) for n, s in aliases if n != name])
            await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.delete(name, actor=who.key_id),
                lambda: store.create(name, before, actor=who.key_id),
            )
        return reply({"name": name, "deleted": True})


def _references(config: Config, alias: str) -> list[str]:
    """What in ``config`` lists ``alias`` in a chain: other aliases' fallbacks, router chains."""
    users = [
        f"the fallbacks of alias '{m.name}'"
        for m in config.models
        if m.name != alias and alias in m.fallbacks
    ]
    if alias in config.router.default_fallbacks:
        users.append("router.default_fallbacks")
    levels = config.router.power_levels
    users += [f"router.power_levels.{level}" for level, names in levels.items() if alias in names]
    return users
