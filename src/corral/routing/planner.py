"""The attempt plan for a request: the requested model's pool, then its fallback chain.

Chains are followed transitively in order (each fallback's own fallbacks right after it),
then the router's ``default_fallbacks`` once at the end (not for ``explicit_only`` models);
each name appears once. Power levels (``corral/eco``) are chains of their own; with routing
rules (routing/rules.py) the caller's tier picks a level's candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral.config.schema import TierRule
from corral.conversation.call import Route
from corral.errors import ModelNotFound
from corral.routing import rules as tier_rules
from corral.routing.catalog import Catalog

MAX_POOLS = 8


def plan(
    catalog: Catalog,
    name: str,
    power_levels: Mapping[str, tuple[str, ...]],
    rules: Sequence[TierRule] = (),
    tier: str | None = None,
) -> list[Route]:
    if name.startswith("corral/"):
        level = name.removeprefix("corral/")
        names = tier_rules.candidates(rules, level, tier) or power_levels.get(level)
        if not names:
            levels = dict.fromkeys([*power_levels, *(r.level for r in rules)])
            raise ModelNotFound(name, [f"corral/{lvl}" for lvl in levels])
        try:
            return _expand(catalog, list(names), required=False)
        except ModelNotFound:
            raise ModelNotFound(name, []) from None
    return _expand(catalog, [name], required=True)


def _expand(catalog: Catalog, names: list[str], *, required: bool) -> list[Route]:
    routes: list[Route] = []
    seen: set[str] = set()

    def add(name: str, must: bool) -> None:
        if name in seen or len(routes) >= MAX_POOLS:
            return
        seen.add(name)
        try:
            route = catalog.route(name)
        except ModelNotFound:
            if must:
                raise
            return  # a fallback that serves nothing right now is skipped, not fatal
        routes.append(route)
        for nxt in route.fallbacks:
            add(nxt, False)

    for i, name in enumerate(names):
        add(name, required and i == 0)
    if routes and not routes[0].explicit_only:
        for name in catalog.default_fallbacks:
            add(name, False)
    if not routes:
        raise ModelNotFound(names[0], catalog.suggest(names[0]))
    return routes
