"""Ordering a pool's targets: priority tiers first, then a strategy within each tier.

Pure functions over in-memory state. Targets that are ejected or misconfigured are left
out, unless nothing else is left ("panic": try them anyway rather than fail everything).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from itertools import groupby

from corral.conversation.call import Target
from corral.routing.state import DeploymentState

States = Mapping[str, DeploymentState]
Within = Callable[[list[Target], States, "Context"], list[Target]]


class Context:
    """What a strategy may look at besides the states."""

    __slots__ = ("counter", "num_ctx", "rng")

    def __init__(self, counter: int, num_ctx: int | None, rng: random.Random) -> None:
        self.counter = counter
        self.num_ctx = num_ctx
        self.rng = rng


def _weighted(targets: list[Target], states: States, ctx: Context) -> list[Target]:
    # Efraimidis-Spirakis: a weighted random order in one pass.
    def key(t: Target) -> float:
        return math.log(ctx.rng.random() or 1e-12) / t.weight if t.weight > 0 else -math.inf

    return sorted(targets, key=key, reverse=True)


def _round_robin(targets: list[Target], states: States, ctx: Context) -> list[Target]:
    if not targets:
        return targets
    shift = ctx.counter % len(targets)
    return targets[shift:] + targets[:shift]


def _least_busy(targets: list[Target], states: States, ctx: Context) -> list[Target]:
    rotated = _round_robin(targets, states, ctx)  # fair among equals
    return sorted(rotated, key=lambda t: states[t.provider].load())


def _latency(targets: list[Target], states: States, ctx: Context) -> list[Target]:
    rotated = _round_robin(targets, states, ctx)
    return sorted(rotated, key=lambda t: states[t.provider].ewma_ms or 0.0)  # unmeasured first: explore


def _warm(targets: list[Target], states: States, ctx: Context) -> list[Target]:
    """Loaded here with the right context length first, then by free capacity, then latency."""

    def key(t: Target) -> tuple[int, float, float]:
        state = states[t.provider]
        warm = state.warm(t.model, ctx.num_ctx)
        return (0 if warm is not False else 1, state.load(), state.ewma_ms or 0.0)

    return sorted(_round_robin(targets, states, ctx), key=key)


STRATEGIES: dict[str, Within] = {
    "warm": _warm,
    "priority": _weighted,
    "weighted": _weighted,
    "round_robin": _round_robin,
    "least_busy": _least_busy,
    "latency": _latency,
}


def order(targets: Sequence[Target], states: States, strategy: str, ctx: Context, now: float) -> list[Target]:
    """Targets best first: by priority tier, strategy within a tier, busy ones last in a tier."""
    if len(targets) == 1:  # the common case: nothing to order
        state = states[targets[0].provider]
        return list(targets) if state.enabled else []
    usable = [t for t in targets if states[t.provider].routable(now)]
    if not usable:  # panic: every deployment is ejected or misconfigured; try them anyway
        return sorted(
            (t for t in targets if states[t.provider].enabled),
            key=lambda t: (states[t.provider].misconfigured is not None, states[t.provider].ejected_until),
        )
    within = STRATEGIES[strategy]
    out: list[Target] = []
    for _, tier in groupby(sorted(usable, key=lambda t: t.priority), key=lambda t: t.priority):
        ranked = within(list(tier), states, ctx)
        out.extend(t for t in ranked if not states[t.provider].is_busy(now))
        out.extend(t for t in ranked if states[t.provider].is_busy(now))
    return out
