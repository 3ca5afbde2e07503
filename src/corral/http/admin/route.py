"""The "why" of GET /admin/route: whose tier a plan is for, and in words why each pool is in the
plan and each candidate ranks where it does.

A key is named by its id or its preview (``gw_AbCd1234…``), never by the key itself: a full
key in a URL would end up in access logs and browser history, so one is refused without
being echoed. The key's ``tier`` picks the power level's rules (routing/rules.py); ``tier=``
asks for a tier directly.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from corral.config.schema import TierRule
from corral.conversation.call import Route, Target
from corral.errors import InvalidRequest
from corral.http.admin.context import AdminContext
from corral.keys.format import ID_LEN, PREFIX
from corral.routing import rules as tier_rules
from corral.routing.state import DeploymentState

_ID = re.compile(rf"^(?:{PREFIX})?([0-9A-Za-z]{{{ID_LEN}}})(?:_?…|\.\.\.|_\*+)?$")
MAX_TIER = 64


async def caller(ctx: AdminContext, request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
    """(the key's id, name and tier; or None) and the tier a plan is for, from ``key=`` or ``tier=``."""
    given = request.query.get("key")
    tier = request.query.get("tier")
    if tier is not None and (not tier.strip() or len(tier) > MAX_TIER):
        raise InvalidRequest(f"'tier' must be a tier name of at most {MAX_TIER} characters.", param="tier")
    if given is None:
        return None, tier
    match = _ID.match(given.strip())
    if match is None:
        raise InvalidRequest(
            "'key' takes a key's id or its preview (gw_XXXXXXXX…), never the key itself: "
            "GET /admin/keys lists the ids. If a key was put in a URL, rotate it.",
            param="key",
        )
    record = await ctx.plane(request).store.keys.get_by_id(match.group(1))
    key = {"id": record.id, "name": record.name, "tier": record.tier}
    return key, tier if tier is not None else record.tier


def pool_reasons(routes: list[Route], rules: list[TierRule], tier: str | None) -> list[str]:
    """Why each pool is in the plan, in plan order."""
    by_model = {r.model: r for r in rules}
    out: list[str] = []
    for i, route in enumerate(routes):
        rule = by_model.get(route.name)
        if rule is not None:
            out.append(tier_rules.why(rule, tier))
        elif i == 0:
            out.append("the requested model")
        else:
            parent = next((r.name for r in routes[:i] if route.name in r.fallbacks), None)
            out.append(
                f"a fallback of '{parent}'" if parent else "a default fallback (router.default_fallbacks)"
            )
    return out


def target_reason(
    target: Target, state: DeploymentState | None, rank: int | None, now: float, num_ctx: int | None
) -> str:
    """Why a candidate ranks where it does (or is left out)."""
    if state is None:
        return "left out: no such deployment is running"
    status = state.status(now)
    if rank is None:
        return f"left out: the deployment is {status}"
    parts = [f"rank {rank}", f"priority {target.priority}"]
    if not state.model_usable(target.model, now):
        parts.append(f"its model is ejected here ({state.models[state.model_key(target.model)].last_error})")
    warm = state.warm(target.model, num_ctx)
    if warm is not None:
        parts.append("warm (loaded)" if warm else "cold (the model must load)")
    parts.append(f"{status}, {state.in_flight}/{state.max_parallel or '∞'} in flight")
    if state.ewma_ms is not None:
        parts.append(f"latency {state.ewma_ms:.0f} ms")
    p99 = state.first_tokens.warm_quantile(target.model, "p99")
    if p99 is not None:
        parts.append(f"warm first token p99 {p99 * 1000:.0f} ms")
    return ", ".join(parts)
