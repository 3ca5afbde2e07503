"""corral as one big Ollama: the fleet's merged views and model management.

GET /api/tags merges every instance's catalog (one entry per name and digest, with the
instances that hold it) plus aliases and OpenAI-type models; GET /api/ps lists loaded models
across the fleet with their instance; POST /api/show asks an instance that has the model (or
describes an OpenAI-type one). Pull, delete and copy fan out to Ollama instances (admin only);
push, create and blobs are refused because they write to upstream disks.
"""

from __future__ import annotations

import hashlib
from typing import Any

from corral.core.call import Reply, Surface
from corral.errors import InvalidRequest, ModelNotFound, PermissionDenied
from corral.http import catalog_view
from corral.http.auth import Authenticator, require_model
from corral.http.exchange import Exchange
from corral.http.json_body import parse_json
from corral.http.ollama_manage import Management
from corral.http.parts import Parts
from corral.http.replies import json_reply, text_reply
from corral.http.routes import Route, RouteTable
from corral.providers.ollama.provider import OllamaProvider
from corral.providers.upstream import upstream_errors

RUNNING = b"Ollama is running"
DEFAULT_VERSION = "0.12.0"
_REFUSED = ("/api/push", "/api/create")
_ANY = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _synthetic(name: str, family: str, owner: str) -> dict[str, Any]:
    return {
        "name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": 0,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {"parent_model": "", "format": family, "family": family, "families": [family],
                    "parameter_size": "", "quantization_level": ""},
        "corral_instances": [owner],
    }  # fmt: skip


class FleetRoutes:
    def __init__(self, parts: Parts, auth: Authenticator, limit: int) -> None:
        self._parts = parts  # the gateway is taken from it on each request (built at startup)
        self._auth = auth
        self._limit = limit
        self._manage = Management(parts, auth, limit)

    def add_to(self, table: RouteTable) -> None:
        table.add(["GET"], "/", Route(self.root, access="open", surface=Surface.OLLAMA))  # HEAD too
        table.add(["GET"], "/api/version", Route(self.version, access="open", surface=Surface.OLLAMA))
        table.add(["GET"], "/api/tags", Route(self.tags, surface=Surface.OLLAMA))
        table.add(["GET"], "/api/ps", Route(self.ps, surface=Surface.OLLAMA))
        table.add(["POST"], "/api/show", Route(self.show, surface=Surface.OLLAMA))
        self._manage.add_to(table)
        refused = Route(self.refused, surface=Surface.OLLAMA)
        for path in _REFUSED:
            table.add(_ANY, path, refused)
        table.add_prefix(_ANY, "/api/blobs/", refused)

    async def root(self, ex: Exchange) -> None:
        await ex.write(text_reply(RUNNING))

    async def version(self, ex: Exchange) -> None:
        """The lowest version among the instances, so clients do not use features some lack."""
        versions = [s.version for s in self._parts.gateway.fleet.states.values() if s.version]
        lowest = min(versions, key=_version_key) if versions else DEFAULT_VERSION
        await ex.write(json_reply({"version": lowest}))

    async def tags(self, ex: Exchange) -> None:
        who = ex.principal or self._auth.check(ex)
        gw = self._parts.gateway
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        extra: list[dict[str, Any]] = []
        view = catalog_view.snapshot(self._parts.accountant)
        for name, entry in gw.catalog.providers.items():
            if not entry.enabled:
                continue
            for info in gw.catalog.models_of(name):
                meta = view.get(name, info.id)
                if meta is not None and not meta.enabled:
                    continue  # disabled in the catalog: not listed
                if entry.type == "ollama":
                    digest = str(info.details.get("digest", ""))
                    row = merged.get((info.id, digest))
                    if row is None:
                        row = {
                            "name": info.id,
                            "model": info.id,
                            "modified_at": info.details.get("modified_at", ""),
                            "size": info.details.get("size", 0),
                            "digest": digest,
                            "details": info.details.get("details", {}),
                            "corral_instances": [],
                        }
                        if "capabilities" in info.details:
                            row["capabilities"] = info.details["capabilities"]
                        merged[(info.id, digest)] = row
                    catalog_view.fill_tags_row(row, meta)
                    row["corral_instances"].append(name)
                else:
                    row = _synthetic(f"{name}/{info.id}", entry.type, name)
                    extra.append(catalog_view.fill_tags_row(row, meta))
        for alias in gw.config.models:
            extra.append(_synthetic(alias.name, "alias", alias.target))
        models = [m for m in [*merged.values(), *extra] if who.may_use(m["name"])]
        await ex.write(json_reply({"models": models}))

    async def ps(self, ex: Exchange) -> None:
        who = ex.principal or self._auth.check(ex)
        rows = []
        for state in self._parts.gateway.fleet.states.values():
            for entry in state.running:
                if who.may_use(str(entry.get("name"))):
                    rows.append({**entry, "corral_instance": state.name})
        await ex.write(json_reply({"models": rows}))

    async def show(self, ex: Exchange) -> None:
        who = ex.principal or self._auth.check(ex)
        body = parse_json(await ex.body(self._limit))
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("model is required", param="model")
        require_model(who, name)
        gw = self._parts.gateway
        targets = gw.catalog.resolve(name)
        for target in targets:
            provider = gw.providers.get(target.provider)
            if isinstance(provider, OllamaProvider):
                resp = await provider.manage(
                    "POST", provider.cfg.path("show"), {**body, "model": target.model}
                )
                try:
                    async with upstream_errors(provider.cfg):
                        raw = await resp.read()
                    if resp.status != 404:
                        await ex.write(Reply(status=resp.status, body=raw))
                        return
                finally:
                    resp.release()
        if targets and not any(isinstance(gw.providers.get(t.provider), OllamaProvider) for t in targets):
            await ex.write(json_reply(_described(name, targets[0].provider)))
            return
        raise ModelNotFound(name, gw.catalog.suggest(name))

    async def refused(self, ex: Exchange) -> None:
        raise PermissionDenied(
            f"corral does not pass {ex.path} through: it writes to the disks of upstream instances. "
            "Run it against the instance directly.",
            code="refused",
        )


def _described(name: str, provider: str) -> dict[str, Any]:
    """/api/show for a model on an OpenAI-type upstream, which has no such endpoint."""
    return {
        "modelfile": f"# {name} is served by the OpenAI-compatible provider '{provider}' through corral\n",
        "parameters": "", "template": "{{ .Prompt }}",
        "details": {"parent_model": "", "format": "openai", "family": provider, "families": [provider],
                    "parameter_size": "", "quantization_level": ""},
        "model_info": {"general.architecture": "openai"},
        "capabilities": ["completion", "tools"],
        "modified_at": "1970-01-01T00:00:00Z",
    }  # fmt: skip


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)
