"""Which models exist and where: aliases, provider/model names, and discovered catalogs.

Resolution order for a requested name:
1. an alias from the config;
2. ``provider/model`` where ``provider`` is a configured provider;
3. ``ollama/model``: every Ollama-type provider whose catalog has the model;
4. the bare name, against every provider's discovered (or static) catalog.
Results are cached until a catalog changes, so the request path does a dict lookup.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral.core.call import ModelInfo, Target
from corral.errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    name: str
    type: str
    priority: int = 0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ListedModel:
    """One row of GET /v1/models."""

    id: str
    owned_by: str
    created: int
    target: Target | None = None


def _bare_names(model: str) -> tuple[str, ...]:
    """Names a model answers to: Ollama's 'llama3.2:latest' is also 'llama3.2'."""
    if model.endswith(":latest"):
        return (model, model.removesuffix(":latest"))
    return (model,)


class Catalog:
    def __init__(self, providers: Iterable[ProviderEntry], aliases: Mapping[str, str]) -> None:
        self._providers = {p.name: p for p in providers}
        self._aliases = dict(aliases)
        self._models: dict[str, list[ModelInfo]] = {name: [] for name in self._providers}
        self._cache: dict[str, list[Target]] = {}
        self._bare: dict[str, list[Target]] = {}

    @property
    def providers(self) -> Mapping[str, ProviderEntry]:
        return self._providers

    def update(self, provider: str, models: list[ModelInfo]) -> None:
        """Replace what ``provider`` serves (from discovery or a static list)."""
        if self._models.get(provider) == models:
            return
        self._models[provider] = list(models)
        self._rebuild()

    def models_of(self, provider: str) -> list[ModelInfo]:
        return list(self._models.get(provider, ()))

    def _rebuild(self) -> None:
        bare: dict[str, list[Target]] = {}
        order = sorted(self._providers.values(), key=lambda p: p.priority)
        for entry in order:
            if not entry.enabled:
                continue
            for info in self._models.get(entry.name, ()):
                for name in _bare_names(info.id):
                    bare.setdefault(name, []).append(Target(entry.name, info.id))
        self._bare = bare
        self._cache = {}

    def resolve(self, name: str) -> list[Target]:
        """Every target ``name`` can be served by, best first. Raises ModelNotFound."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        targets = self._lookup(name)
        if not targets:
            raise ModelNotFound(name, self.suggest(name))
        self._cache[name] = targets
        return targets

    def _lookup(self, name: str) -> list[Target]:
        alias = self._aliases.get(name)
        if alias is not None:
            if alias.startswith("ollama/") and "ollama" not in self._providers:
                return self._any_ollama(alias.removeprefix("ollama/"))
            provider, _, model = alias.partition("/")
            return [Target(provider, model)] if self._enabled(provider) else []
        provider, sep, model = name.partition("/")
        if sep and model and provider in self._providers:
            return [Target(provider, model)] if self._enabled(provider) else []
        if sep and model and provider == "ollama":
            return self._any_ollama(model)
        return list(self._bare.get(name, ()))

    def _any_ollama(self, model: str) -> list[Target]:
        return [t for t in self._bare.get(model, ()) if self._providers[t.provider].type == "ollama"]

    def _enabled(self, provider: str) -> bool:
        entry = self._providers.get(provider)
        return entry is not None and entry.enabled

    def listing(self) -> list[ListedModel]:
        """Aliases first, then every discovered model as provider/model."""
        rows = [
            ListedModel(id=name, owned_by="corral", created=0, target=Target(*target.partition("/")[::2]))
            for name, target in self._aliases.items()
        ]
        for entry in self._providers.values():
            if not entry.enabled:
                continue
            for info in self._models.get(entry.name, ()):
                rows.append(
                    ListedModel(
                        id=f"{entry.name}/{info.id}",
                        owned_by=entry.name,
                        created=info.created,
                        target=Target(entry.name, info.id),
                    )
                )
        return rows

    def suggest(self, name: str) -> list[str]:
        candidates = {row.id for row in self.listing()} | set(self._bare)
        return difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
