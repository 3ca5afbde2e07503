"""/admin/providers: list, create, read, PATCH, delete and test upstream providers.

Providers from the YAML file are shown (``"managed_by": "config"``) but are read-only here;
those created through the API live in the database (``"managed_by": "api"``). Every view is
redacted: an ``api_key_preview`` and the header names, never a key or a header value. Changes
are validated exactly like the YAML loader validates, audited with the caller's key id, and
applied to the running gateway at once. A gateway of several workers without Redis refuses
(409) a ``max_parallel`` it could not split between them (``corral.control.workers``).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import asdict, fields
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from corral.config.schema import Config, ProviderConfig
from corral.control.merge import provider_from_api
from corral.control.workers import provider_refusal
from corral.errors import ConfigError, InvalidRequest
from corral.gateway import Gateway, build_provider
from corral.http.admin import changes
from corral.http.admin.context import AdminContext, Conflict, config_managed, listing, reply
from corral.http.admin.input import from_config_error, path_name, read_object, reject_unknown
from corral.providers.base import Provider
from corral.providers.demo import DemoProvider
from corral.security.crypto import preview
from corral.store.errors import AlreadyExists, Missing

KIND = "provider"
TEST_TIMEOUT = 10.0  # seconds for the whole test: probe and model list
MAX_NAME = 128
MAX_URL = 2048
BASE_URL = r"^[hH][tT][tT][pP][sS]?://\S+$"  # then validated as the YAML loader does
FIELDS = tuple(f.name for f in fields(ProviderConfig))  # exactly what the YAML loader accepts


def config_view(cfg: ProviderConfig) -> dict[str, Any]:
    """A YAML provider in the shape of the API's view: every field, secrets reduced."""
    out = asdict(cfg)
    out.pop("api_key")
    out.pop("headers")
    out["models"] = None if cfg.models is None else list(cfg.models)
    out["api_key_preview"] = preview(cfg.api_key) if cfg.api_key else None
    out["has_api_key"] = cfg.api_key is not None
    out["header_names"] = sorted(cfg.headers)
    out["created_at"] = out["updated_at"] = None
    out["managed_by"] = "config"
    return out


def api_view(view: dict[str, Any]) -> dict[str, Any]:
    """A database provider's redacted view (from ``store.providers.view``)."""
    view["managed_by"] = "api"
    return view


def demo_view() -> dict[str, Any]:
    return {
        "name": "demo",
        "type": "demo",
        "base_url": None,
        "enabled": True,
        "models": ["echo"],
        "api_key_preview": None,
        "has_api_key": False,
        "header_names": [],
        "created_at": None,
        "updated_at": None,
        "managed_by": "config",
    }


def scrub(text: str, cfg: ProviderConfig) -> str:
    """``text`` without the provider's key, header values or URL password."""
    secrets = [cfg.api_key or "", *cfg.headers.values(), urlsplit(cfg.base_url).password or ""]
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text


async def run_test(provider: Provider, cfg: ProviderConfig | None) -> dict[str, Any]:
    """Probe the provider and list its models, within TEST_TIMEOUT; never raises."""
    started = time.monotonic()
    result: dict[str, Any] = {"success": False, "latency_ms": None, "models_found": None, "error": None}
    try:
        async with asyncio.timeout(TEST_TIMEOUT):
            probe = await provider.probe()
            result["latency_ms"] = round(probe.latency_ms or (time.monotonic() - started) * 1000, 2)
            if not probe.ok:
                result["error"] = probe.error or "the health check failed"
            else:
                result["models_found"] = len(await provider.list_models())
                result["success"] = True
    except TimeoutError:
        result["error"] = f"Upstream '{provider.name}' did not answer within {TEST_TIMEOUT:g} s."
    except Exception as exc:  # any failure is the test's answer, never a 500
        result["error"] = getattr(exc, "message", None) or f"the test failed ({type(exc).__name__})"
    finally:
        await provider.close()
    if result["error"] is not None and cfg is not None:
        result["error"] = scrub(str(result["error"]), cfg)
    return result


class ProviderRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    # reading -----------------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.parts.control
        base = self._ctx.base_config(request)
        rows = [config_view(p) for p in base.providers]
        if base.demo:
            rows.append(demo_view())
        if plane is not None:
            taken = {row["name"] for row in rows}
            for record in await plane.store.providers.list():
                if record.name not in taken:
                    rows.append(api_view(plane.store.providers.view(record)))
        return listing(rows)

    async def get(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        name = path_name(request, KIND, MAX_NAME)
        plane = self._ctx.parts.control
        base = self._ctx.base_config(request)
        for cfg in base.providers:
            if cfg.name == name:
                return reply(config_view(cfg))
        if base.demo and name == "demo":
            return reply(demo_view())
        if plane is None:
            raise Missing(KIND, name)
        record = await plane.store.providers.get(name)
        return reply(api_view(plane.store.providers.view(record)))

    # writing -----------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        body = await read_object(request)
        reject_unknown(body, FIELDS, "provider")
        name = body.get("name")
        if isinstance(name, str) and name in plane.config_providers:
            raise config_managed(KIND, name)
        data = {k: v for k, v in body.items() if v is not None}
        gateway = self._ctx.gateway(request)
        _fits_workers(_validate(data), gateway)
        async with self._ctx.lock:
            providers, aliases = await changes.stored(plane)
            if any(p["name"] == data["name"] for p in providers):
                raise AlreadyExists(KIND, data["name"])
            changes.check(plane, [*providers, data], aliases)
            store = plane.store.providers
            record = await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.create(data, actor=who.key_id),
                lambda: store.delete(data["name"], actor=who.key_id),
            )
        return reply(api_view(store.view(record)), status=201)

    async def update(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        name = path_name(request, KIND, MAX_NAME)
        if name in plane.config_providers:
            raise config_managed(KIND, name)
        body = await read_object(request)
        reject_unknown(body, FIELDS, "provider")
        if "name" in body and body["name"] != name:
            raise InvalidRequest(
                "A provider cannot be renamed. Create it under the new name, then delete the old one.",
                param="name",
            )
        gateway = self._ctx.gateway(request)
        store = plane.store.providers
        async with self._ctx.lock:
            before = store.reveal(await store.get(name))
            merged = {**before, **body}
            _fits_workers(_validate({k: v for k, v in merged.items() if v is not None}), gateway)
            providers, aliases = await changes.stored(plane)
            changes.check(plane, [merged if p["name"] == name else p for p in providers], aliases)
            undo = {**{k: None for k in body if k not in before}, **before}
            undo.pop("name")
            record = await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.update(name, body, actor=who.key_id),
                lambda: store.update(name, undo, actor=who.key_id),
            )
        return reply(api_view(store.view(record)))

    async def delete(self, request: web.Request) -> web.Response:
        who = self._ctx.admin(request)
        plane = self._ctx.plane(request)
        name = path_name(request, KIND, MAX_NAME)
        if name in plane.config_providers:
            raise config_managed(KIND, name)
        gateway = self._ctx.gateway(request)
        store = plane.store.providers
        async with self._ctx.lock:
            before = store.reveal(await store.get(name))
            providers, aliases = await changes.stored(plane)
            current = changes.check(plane, providers, aliases)
            users = _references(current, name)
            if users:
                raise Conflict(
                    f"The provider '{name}' is still used by {', '.join(users)}. Change or delete "
                    "those first, then delete the provider.",
                    code="provider_in_use",
                    param="name",
                )
            changes.check(plane, [p for p in providers if p["name"] != name], aliases)
            await changes.write_and_apply(
                plane,
                gateway,
                lambda: store.delete(name, actor=who.key_id),
                lambda: store.create(before, actor=who.key_id),
            )
        return reply({"name": name, "deleted": True})

    # testing -----------------------------------------------------------------------------
    async def test(self, request: web.Request) -> web.Response:
        """Probe the stored (or YAML) provider with a temporary client; the body is ignored."""
        self._ctx.admin(request)
        name = path_name(request, KIND, MAX_NAME)
        plane = self._ctx.parts.control
        base = self._ctx.base_config(request)
        cfg = next((p for p in base.providers if p.name == name), None)
        provider: Provider
        if cfg is None and base.demo and name == "demo":
            provider = DemoProvider()
        else:
            if cfg is None:
                if plane is None:
                    raise Missing(KIND, name)
                record = await plane.store.providers.get(name)
                try:
                    cfg = provider_from_api(plane.store.providers.reveal(record))
                except ConfigError as exc:
                    raise from_config_error(exc) from None
            provider = build_provider(cfg)
        return reply(await run_test(provider, cfg))


def _validate(data: dict[str, Any]) -> ProviderConfig:
    """Validate a full provider as the YAML loader would; 400 naming the field on error."""
    name = data.get("name")
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise InvalidRequest(f"'name' must be at most {MAX_NAME} characters.", param="name")
    url = data.get("base_url")
    if isinstance(url, str):
        if len(url) > MAX_URL:
            raise InvalidRequest(f"'base_url' must be at most {MAX_URL} characters.", param="base_url")
        if re.match(BASE_URL, url) is None:
            raise InvalidRequest(
                "'base_url' must be an http:// or https:// URL without spaces, e.g. http://gpu-box:11434.",
                param="base_url",
            )
        try:
            _ = urlsplit(url).port  # the loader does not catch ValueError ('http://h[', 'http://h:x')
        except ValueError as exc:
            raise InvalidRequest(f"'base_url' is not a valid URL ({exc}).", param="base_url") from None
    try:
        return provider_from_api(data)
    except ConfigError as exc:
        raise from_config_error(exc) from None


def _fits_workers(cfg: ProviderConfig, gateway: Gateway) -> None:
    """409 when the workers that split slots apart (``slots.workers``: more than 1 only without
    Redis, corral.http.app) cannot split this provider's ``max_parallel``."""
    refused = provider_refusal(cfg.name, cfg.max_parallel, gateway.slots.workers) if cfg.enabled else None
    if refused is not None:
        raise refused


def _references(config: Config, provider: str) -> list[str]:
    """What in ``config`` names ``provider``: alias targets and fallbacks, router chains."""
    prefix = provider + "/"
    users: list[str] = []
    for alias in config.models:
        named = [t.target for t in alias.targets] + list(alias.fallbacks)
        if any(n.startswith(prefix) for n in named):
            users.append(f"alias '{alias.name}'")
    if any(n.startswith(prefix) for n in config.router.default_fallbacks):
        users.append("router.default_fallbacks")
    for level, names in config.router.power_levels.items():
        if any(n.startswith(prefix) for n in names):
            users.append(f"router.power_levels.{level}")
    return users
