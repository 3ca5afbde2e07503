"""GET /admin/route (where would a request for this model go?) and POST
/admin/providers/{name}/check (run a health probe and a model listing now). Admin scope.

The route plan is the engine's own (``corral.routing.planner``): the requested model's pool,
then its fallback chain and the default fallbacks, each pool with its strategy and its targets
ranked as the strategy ranks them at this moment, beside each deployment's live state.
Weighted and round-robin strategies order differently from one request to the next; the rank
shown is one such order. ``key=`` (a key's id or preview) or ``tier=`` plans a power level by
that tier's rules; each pool and each candidate says why it is there (http/admin/route.py).
"""

from __future__ import annotations

import random
import time
from typing import Any

from aiohttp import web

from corral.config.routing import POWER_LEVELS
from corral.core.call import Route
from corral.errors import InvalidRequest, NotFound
from corral.gateway import Gateway
from corral.http.admin.context import AdminContext, reply
from corral.http.admin.health import deployment_view
from corral.http.admin.input import path_name
from corral.http.admin.route import caller, pool_reasons, target_reason
from corral.routing import planner
from corral.routing import rules as tier_rules
from corral.routing.strategies import Context, order

MAX_MODEL = 256


def pool_view(gw: Gateway, route: Route, now: float) -> dict[str, Any]:
    states = gw.fleet.states
    strategy = route.strategy or gw.config.router.strategy
    known = [t for t in route.targets if t.provider in states]
    ranked = order(known, states, strategy, Context(0, route.num_ctx, random.Random(0)), now)  # noqa: S311
    rank = {t: i + 1 for i, t in enumerate(ranked)}
    targets = []
    for t in route.targets:
        state = states.get(t.provider)
        targets.append(
            {
                "provider": t.provider,
                "model": t.model,
                "priority": t.priority,
                "weight": t.weight,
                "rank": rank.get(t),
                "state": state.status(now) if state else "unknown",
                "in_flight": state.in_flight if state else 0,
                "max_parallel": (state.max_parallel or None) if state else None,
                "warm": state.warm(t.model, route.num_ctx) if state else None,
                "latency_ms": round(state.ewma_ms, 2) if state and state.ewma_ms is not None else None,
                "model_ejected": not state.model_usable(t.model, now) if state else None,
                "why": target_reason(t, state, rank.get(t), now, route.num_ctx),
            }
        )
    return {
        "name": route.name,
        "alias": route.is_alias,
        "strategy": strategy,
        "num_ctx": route.num_ctx,
        "explicit_only": route.explicit_only,
        "fallbacks": list(route.fallbacks),
        "targets": targets,
    }


class PlanRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def route(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        model = request.query.get("model", "").strip()
        power = request.query.get("power")
        if power is not None:
            if power not in POWER_LEVELS:
                raise InvalidRequest(f"'power' must be one of {', '.join(POWER_LEVELS)}.", param="power")
            model = model or f"corral/{power}"
        if not model or len(model) > MAX_MODEL:
            raise InvalidRequest(
                f"'model' is required (at most {MAX_MODEL} characters): a model, an alias or corral/<level>.",
                param="model",
            )
        gw = self._ctx.gateway(request)
        key, tier = await caller(self._ctx, request)
        cfg = gw.config.router
        routes = planner.plan(gw.catalog, model, cfg.power_levels, cfg.rules, tier)
        level = model.removeprefix("corral/") if model.startswith("corral/") else None
        applied = tier_rules.applicable(cfg.rules, level, tier) if level else []
        now = time.monotonic()
        pools = [pool_view(gw, r, now) for r in routes]
        for pool, why in zip(pools, pool_reasons(routes, applied, tier), strict=True):
            pool["why"] = why
        return reply({"model": model, "key": key, "tier": tier or "all", "pools": pools})

    async def check(self, request: web.Request) -> web.Response:
        """Probe the provider and list its models now, then answer its health row."""
        self._ctx.admin(request)
        name = path_name(request, "provider", 128)
        gw = self._ctx.gateway(request)
        state = gw.fleet.states.get(name)
        if state is None:
            raise NotFound(f"No provider named '{name}'. GET /admin/providers lists them.", code="not_found")
        if name in gw.providers:  # an enabled provider: disabled ones are not probed
            await gw.health.check(name)
            await gw.discovery.refresh(name)
        urls = {p.name: p.base_url for p in gw.config.providers}
        return reply(deployment_view(state, time.monotonic(), urls.get(name)))
