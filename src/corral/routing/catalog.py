"""Which models exist and where: aliases, provider/model names, and discovered catalogs.

Resolution order for a requested name:
1. an alias from the config (one target or a pool, with fallbacks and a strategy);
2. ``provider/model`` where ``provider`` is a configured provider;
3. ``ollama/model``: every Ollama-type provider whose catalog has the model;
4. the bare name, against every provider's discovered (or static) catalog.
Routes of known names (aliases, discovered models) are cached until a catalog changes, so the
request path does a dict lookup; the cache is an LRU of ``ROUTE_CACHE`` entries, and a name that
is not known (``provider/anything``, resolved without a lookup table) is never kept: clients
choose names, and a cache of every name they try would grow without end. Names longer than
``MAX_NAME`` are refused where requests are read (``corral.http.json_body``).
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral.config.schema import ModelAlias
from corral.conversation.call import ModelInfo, Route, Target
from corral.errors import ModelNotFound

MAX_NAME = 256  # characters in a model name a client may send
ROUTE_CACHE = 4096  # routes kept (least recently used go first)


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


def _bare_names(model: str) -> tuple[str, ...]:
    """Names a model answers to: Ollama's 'llama3.2:latest' is also 'llama3.2'."""
    if model.endswith(":latest"):
        return (model, model.removesuffix(":latest"))
    return (model,)


class Catalog:
    def __init__(
        self,
        providers: Iterable[ProviderEntry],
        aliases: Iterable[ModelAlias],
        default_fallbacks: tuple[str, ...] = (),
        *,
        cache_size: int = ROUTE_CACHE,
    ) -> None:
        self._providers = {p.name: p for p in providers}
        self._aliases = {a.name: a for a in aliases}
        self._default_fallbacks = default_fallbacks
        self._models: dict[str, list[ModelInfo]] = {name: [] for name in self._providers}
        self._cache: OrderedDict[str, Route] = OrderedDict()
        self._cache_size = cache_size
        self.version = 0  # bumped whenever what a name resolves to may have changed
        self._bare: dict[str, list[Target]] = {}
        self._served: set[tuple[str, str]] = set()  # (provider, model) pairs discovered or declared

    @property
    def providers(self) -> Mapping[str, ProviderEntry]:
        return self._providers

    @property
    def default_fallbacks(self) -> tuple[str, ...]:
        """Tried after a model's own fallback chain (never for explicit_only models)."""
        return self._default_fallbacks

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
        served: set[tuple[str, str]] = set()
        order = sorted(self._providers.values(), key=lambda p: p.priority)
        for entry in order:
            if not entry.enabled:
                continue
            for info in self._models.get(entry.name, ()):
                for name in _bare_names(info.id):
                    bare.setdefault(name, []).append(Target(entry.name, info.id, entry.priority))
                    served.add((entry.name, name))
        self._bare = bare
        self._served = served
        self._cache = OrderedDict()
        self.version += 1

    def resolve(self, name: str) -> list[Target]:
        """Every target ``name`` can be served by, best first. Raises ModelNotFound."""
        return list(self.route(name).targets)

    def route(self, name: str) -> Route:
        """The route for ``name``. Raises ModelNotFound."""
        cached = self._cache.get(name)
        if cached is not None:
            self._cache.move_to_end(name)
            return cached
        route = self._lookup(name)
        if not route.targets:
            raise ModelNotFound(name, self.suggest(name))
        if route.is_alias or self._known(name):
            self._cache[name] = route
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return route

    def _known(self, name: str) -> bool:
        """Whether ``name`` is in the lookup tables (a discovered model), not merely well formed."""
        if name in self._bare:
            return True
        provider, sep, model = name.partition("/")
        if not sep:
            return False
        return (provider, model) in self._served or (provider == "ollama" and model in self._bare)

    def _lookup(self, name: str) -> Route:
        alias = self._aliases.get(name)
        if alias is not None:
            targets: list[Target] = []
            for member in alias.targets:
                for t in self._expand(member.target):
                    priority = member.priority if member.priority is not None else t.priority
                    targets.append(Target(t.provider, t.model, priority, member.weight))
            return Route(
                name,
                tuple(targets),
                alias.strategy,
                alias.num_ctx,
                tuple(f for f in alias.fallbacks if f != name),
                alias.explicit_only,
                True,
                alias.hedge_after,
            )
        return Route(name, tuple(self._expand(name)))

    def _expand(self, name: str) -> list[Target]:
        provider, sep, model = name.partition("/")
        if sep and model and provider in self._providers:
            entry = self._providers[provider]
            return [Target(provider, model, entry.priority)] if entry.enabled else []
        if sep and model and provider == "ollama":
            return [t for t in self._bare.get(model, ()) if self._providers[t.provider].type == "ollama"]
        return list(self._bare.get(name, ()))

    def listing(self) -> list[ListedModel]:
        """Aliases first, then every discovered model as provider/model."""
        rows = [ListedModel(id=name, owned_by="corral", created=0) for name in self._aliases]
        for entry in self._providers.values():
            if not entry.enabled:
                continue
            for info in self._models.get(entry.name, ()):
                rows.append(
                    ListedModel(id=f"{entry.name}/{info.id}", owned_by=entry.name, created=info.created)
                )
        return rows

    def suggest(self, name: str) -> list[str]:
        if len(name) > MAX_NAME:  # difflib's cost grows with the name: not for names nobody serves
            return []
        candidates = {row.id for row in self.listing()} | set(self._bare)
        return difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
