"""Bulk import into the model catalog from a provider's discovery: ``POST /admin/catalog/import``.

The provider lists its models (Ollama's ``/api/tags``, an OpenAI-type provider's ``/models``);
for an Ollama provider each model's ``/api/show`` adds its capabilities and context length (a
few at a time, each bounded by a timeout). The plan compares that with the catalog: models to
add, fields to update (capabilities and context length only: prices, display names, notes and
the enabled flag are the operator's and are never touched), models unchanged, and catalog
entries the provider no longer lists (reported, never deleted). A dry run returns the plan;
otherwise it is written in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.errors import InvalidRequest, UpstreamTimeout
from corral.gateway import Gateway
from corral.http.admin.models import capabilities, context_length
from corral.providers.ollama.provider import OllamaProvider
from corral.store.catalog import CatalogRecord
from corral.store.errors import Missing

LIST_TIMEOUT = 30.0
SHOW_TIMEOUT = 10.0
AT_ONCE = 8
MAX_SHOW_BYTES = 4 * 1024 * 1024
IMPORTED = ("capabilities", "context_length")


@dataclass(frozen=True, slots=True)
class Found:
    model: str
    capabilities: list[str] | None
    context_length: int | None


@dataclass
class Plan:
    provider: str
    found: list[Found]
    added: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_listed: list[str] = field(default_factory=list)
    show_failed: list[str] = field(default_factory=list)

    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        out = [(a["model"], {k: a[k] for k in IMPORTED}) for a in self.added]
        out += [(u["model"], {k: v["to"] for k, v in u["changes"].items()}) for u in self.updated]
        return out

    def view(self, *, dry_run: bool) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "dry_run": dry_run,
            "found": len(self.found),
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "not_listed": self.not_listed,
            "show_failed": self.show_failed,
        }


async def discover(gateway: Gateway, name: str) -> tuple[list[Found], list[str]]:
    """The provider's models with capabilities and context length, and the models whose
    ``/api/show`` could not be read."""
    provider = gateway.providers.get(name)
    if provider is None:
        if any(p.name == name for p in gateway.config.providers):
            raise InvalidRequest(
                f"The provider '{name}' is disabled; enable it to import its models.", param="provider"
            )
        raise Missing("provider", name)
    try:
        async with asyncio.timeout(LIST_TIMEOUT):
            models = await provider.list_models()
    except TimeoutError:
        raise UpstreamTimeout(name, f"did not list its models within {LIST_TIMEOUT:g} s.") from None
    found = [Found(m.id, capabilities(m.details) or None, context_length(m.details)) for m in models]
    failed: list[str] = []
    if isinstance(provider, OllamaProvider):
        gate = asyncio.Semaphore(AT_ONCE)
        shown = await asyncio.gather(*(_show(gate, provider, f.model) for f in found))
        merged = []
        for f, show in zip(found, shown, strict=True):
            if show is None:
                failed.append(f.model)
                merged.append(f)
            else:
                merged.append(Found(f.model, show[1] or f.capabilities, show[0] or f.context_length))
        found = merged
    return found, failed


async def _show(
    gate: asyncio.Semaphore, client: OllamaProvider, model: str
) -> tuple[int | None, list[str] | None] | None:
    async with gate:
        try:
            async with asyncio.timeout(SHOW_TIMEOUT):
                resp = await client.manage("POST", client.cfg.path("show"), {"model": model})
                try:
                    raw = await resp.read(MAX_SHOW_BYTES)
                    status = resp.status
                finally:
                    resp.release()
        except Exception:  # an instance that cannot say: reported as show_failed
            return None
    if status != 200:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, Mapping):
        return None
    return context_length(data), capabilities(data) or None


def plan(name: str, found: Sequence[Found], stored: Sequence[CatalogRecord], failed: Sequence[str]) -> Plan:
    existing = {_plain(r.model): r for r in stored}  # "kimi" and "kimi:latest" are one Ollama model
    out = Plan(name, list(found), show_failed=sorted(failed))
    listed = set()
    for f in found:
        listed.add(_plain(f.model))
        record = existing.get(_plain(f.model))
        if record is None:
            out.added.append(
                {"model": f.model, "capabilities": f.capabilities, "context_length": f.context_length}
            )
            continue
        changes: dict[str, dict[str, Any]] = {}
        old_caps = None if record.capabilities is None else list(record.capabilities)
        if f.capabilities is not None and f.capabilities != old_caps:
            changes["capabilities"] = {"from": old_caps, "to": f.capabilities}
        if f.context_length is not None and f.context_length != record.context_length:
            changes["context_length"] = {"from": record.context_length, "to": f.context_length}
        if changes:
            out.updated.append({"model": record.model, "changes": changes})
        else:
            out.unchanged.append(record.model)
    out.not_listed = sorted(r.model for key, r in existing.items() if key not in listed)
    return out


def _plain(model: str) -> str:
    return model.removesuffix(":latest")
