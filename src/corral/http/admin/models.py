"""GET /admin/models: every alias and every discovered model, with provider, context length,
capabilities, and which aliases point at each model."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import web

from corral.config.schema import ModelAlias
from corral.core.call import ModelInfo
from corral.core.catalog import ProviderEntry
from corral.gateway import Gateway
from corral.http.admin.context import AdminContext, listing


def context_length(details: Mapping[str, Any]) -> int | None:
    """The model's context length when the upstream reported it (Ollama's show/tags details)."""
    candidates: list[Any] = [details.get("context_length")]
    inner = details.get("details")
    if isinstance(inner, Mapping):
        candidates.append(inner.get("context_length"))
    info = details.get("model_info")
    if isinstance(info, Mapping):
        candidates += [v for k, v in info.items() if str(k).endswith(".context_length")]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def capabilities(details: Mapping[str, Any]) -> list[str]:
    caps = details.get("capabilities")
    return [str(c) for c in caps] if isinstance(caps, list) else []


def _points_at(target: str, entry: ProviderEntry, model: str, providers: Collection[str]) -> bool:
    """Does an alias target ('provider/model' or 'ollama/model') resolve to this model?"""
    provider, _, wanted = target.partition("/")
    generic = provider == "ollama" and provider not in providers and entry.type == "ollama"
    if provider != entry.name and not generic:
        return False
    return model in (wanted, f"{wanted}:latest")


def model_rows(gateway: Gateway, api_aliases: Collection[str]) -> list[dict[str, Any]]:
    catalog = gateway.catalog
    entries = [e for e in catalog.providers.values() if e.enabled]
    found: list[tuple[ProviderEntry, ModelInfo]] = [
        (entry, info) for entry in entries for info in catalog.models_of(entry.name)
    ]
    names = set(catalog.providers)

    def served_by(alias: ModelAlias) -> list[tuple[ProviderEntry, ModelInfo]]:
        return [
            (entry, info)
            for member in alias.targets
            for entry, info in found
            if _points_at(member.target, entry, info.id, names)
        ]

    rows: list[dict[str, Any]] = []
    users: dict[tuple[str, str], list[str]] = {}
    for alias in gateway.config.models:
        provider, _, model = alias.target.partition("/")
        matches = served_by(alias)
        for entry, info in matches:
            users.setdefault((entry.name, info.id), []).append(alias.name)
        details = matches[0][1].details if matches else {}
        rows.append(
            {
                "id": alias.name,
                "provider": provider,
                "model": model,
                "type": "alias",
                "context_length": alias.num_ctx or context_length(details),
                "capabilities": capabilities(details),
                "aliases": [],
                "targets": [t.target for t in alias.targets],
                "fallbacks": list(alias.fallbacks),
                "managed_by": "api" if alias.name in api_aliases else "config",
            }
        )
    for entry, info in found:
        rows.append(
            {
                "id": f"{entry.name}/{info.id}",
                "provider": entry.name,
                "model": info.id,
                "type": "discovered",
                "context_length": context_length(info.details),
                "capabilities": capabilities(info.details),
                "aliases": sorted(set(users.get((entry.name, info.id), []))),
                "provider_type": entry.type,
            }
        )
    return rows


class ModelRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        from corral.http.admin.model_details import ModelDetails

        self._ctx = ctx
        self._details = ModelDetails()  # size, where loaded, price, /api/show's context length

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.parts.control
        gateway = self._ctx.gateway(request)
        api_aliases = (
            {m.name for m in gateway.config.models} - plane.config_aliases if plane is not None else set()
        )
        rows = model_rows(gateway, api_aliases)
        await self._details.add_to(self._ctx.parts.accountant, gateway, rows)
        return listing(rows)

    async def close(self, app: web.Application) -> None:
        """The app is shutting down: no more /api/show asks in the background."""
        await self._details.close()
