"""Routing rules: which models a power level (``corral/eco``, ``balanced``, ``precision``)
tries for a caller of a given tier.

A rule maps (power level, tier) to one candidate model (an alias or provider/model) with a
priority (lower first) and a weight (within a priority, heavier first). A key's ``tier`` picks
the rules written for that tier; a tier without rules of its own for a level, and a key
without a tier, get the ``all`` rules; a level without any rules keeps ``router.power_levels``.
Pure functions over the config: the planner caches their result per (level, tier).
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.config.schema import TierRule

ALL = "all"


def applicable(rules: Sequence[TierRule], level: str, tier: str | None) -> list[TierRule]:
    """The rules that decide ``level`` for ``tier``, best first."""
    for wanted in (tier, ALL) if tier and tier != ALL else (ALL,):
        chosen = [r for r in rules if r.level == level and r.tier == wanted]
        if chosen:
            return sorted(chosen, key=lambda r: (r.priority, -r.weight))
    return []


def candidates(rules: Sequence[TierRule], level: str, tier: str | None) -> tuple[str, ...]:
    """The models ``level`` tries for ``tier``, in order; empty: no rule applies."""
    return tuple(dict.fromkeys(r.model for r in applicable(rules, level, tier)))


def why(rule: TierRule, tier: str | None) -> str:
    """In words, why ``rule`` applies (for ``GET /admin/route``)."""
    whose = f"tier '{rule.tier}'" if rule.tier != ALL else f"tier 'all' (the key's tier: {tier or 'none'})"
    return f"rule for corral/{rule.level}, {whose}: priority {rule.priority}, weight {rule.weight:g}"
