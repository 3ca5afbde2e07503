"""The routing parts of the config: ``models:`` (aliases, pools, fallbacks) and ``router:``.

Fallback chains are checked here, at start: every name must be routable, an ``explicit_only``
model never enters an automatic chain, and chains must not loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from corral.config import fit
from corral.config.fields import Fields
from corral.config.schema import (
    STRATEGIES,
    STRATEGY_ALIASES,
    AliasTarget,
    ModelAlias,
    RouterConfig,
    TierRule,
)
from corral.errors import ConfigError

_MODEL_KEYS = {
    "name", "target", "targets", "fallbacks", "explicit_only", "strategy", "num_ctx", "hedge_after",
    *fit.ALIAS_KEYS,
}  # fmt: skip
_TARGET_KEYS = {"target", "weight", "priority"}
_ROUTER_KEYS = {
    "strategy", "default_fallbacks", "failover_timeout", "request_timeout", "max_attempts",
    "retry_budget_percent", "retry_budget_min", "queue_timeout", "warm_wait", "health_interval",
    "health_timeout", "eject_after", "eject_base", "eject_max", "busy_backoff", "power_levels",
    "first_token", "load_timeout", "hedge_after", "rules", *fit.ROUTER_KEYS,
}  # fmt: skip
_FIRST_TOKEN_KEYS = {"multiplier", "min", "max"}
_RULE_KEYS = {"level", "tier", "model", "models", "priority", "weight"}
HEDGE_QUANTILES = ("p50", "p95", "p99")
POWER_LEVELS = ("eco", "balanced", "precision")


def parse_alias(f: Fields, providers: set[str]) -> ModelAlias:
    f.reject_unknown(_MODEL_KEYS)
    name = cast(str, f.string("name", required=True))
    if name.startswith("corral/"):
        raise f.error("names under 'corral/' are reserved for power levels (corral/eco…).", "name")
    if "target" in f.data and "targets" in f.data:
        raise f.error("give either 'target' or 'targets', not both.", "targets")
    if "target" in f.data:
        targets = [AliasTarget(_target(f, cast(str, f.string("target", required=True)), "target", providers))]
    else:
        items = f.sequence("targets")
        if not items:
            raise f.error("needs 'target: provider/model' or a non-empty 'targets:' list.", "target")
        targets = [_pool_member(f, item, i, providers) for i, item in enumerate(items)]
    strategy = f.string("strategy")
    if strategy is not None:
        strategy = parse_strategy(f, strategy)
    return ModelAlias(
        name=name,
        targets=tuple(targets),
        fallbacks=tuple(f.strings("fallbacks") or ()),
        explicit_only=f.boolean("explicit_only", False),
        strategy=strategy,
        num_ctx=f.integer("num_ctx", None, minimum=1),
        hedge_after=parse_hedge(f),
        **fit.alias_fields(f),
    )


def parse_hedge(f: Fields) -> float | str | None:
    """``hedge_after``: a duration, or a quantile of the deployment's warm first-token times."""
    value = f.raw("hedge_after")
    if isinstance(value, str) and value.strip().lower() in HEDGE_QUANTILES:
        return value.strip().lower()
    if value is None:
        return None
    try:
        return f.duration("hedge_after", 0.0)
    except ConfigError:
        raise f.error(
            f"must be a duration such as '800ms' or one of {', '.join(HEDGE_QUANTILES)} "
            f"(that quantile of the deployment's warm first-token times), got {value!r}.",
            "hedge_after",
        ) from None


def parse_rules(f: Fields) -> tuple[TierRule, ...]:
    """``rules:``: each names a power level, a tier (default ``all``), one model or a list,
    and a priority (lower first) and weight (within a priority)."""
    rules: list[TierRule] = []
    for i, item in enumerate(f.sequence("rules")):
        sub = f.child(item, f"rules[{i}]")
        if not isinstance(item, dict):
            raise sub.error("must be a mapping such as {level: precision, tier: gold, model: big}.")
        sub.reject_unknown(_RULE_KEYS)
        level = cast(str, sub.string("level", required=True))
        if level not in POWER_LEVELS:
            raise sub.error(f"unknown power level '{level}'; use {', '.join(POWER_LEVELS)}.", "level")
        models = sub.strings("models") or []
        one = sub.string("model")
        if one is not None:
            models.insert(0, one)
        if not models:
            raise sub.error("needs 'model: <alias or provider/model>' or 'models: [...]'.", "model")
        tier = sub.string("tier", "all") or "all"
        priority = sub.integer("priority", 0) or 0
        weight = sub.number("weight", 1.0)
        rules += [TierRule(level, m, tier, priority, weight) for m in models]
    return tuple(rules)


def _pool_member(f: Fields, item: object, i: int, providers: set[str]) -> AliasTarget:
    if isinstance(item, str):
        return AliasTarget(_target(f, item, f"targets[{i}]", providers))
    sub = Fields(item, f.at(f"targets[{i}]"), f.source, f.env)
    sub.reject_unknown(_TARGET_KEYS)
    target = _target(sub, cast(str, sub.string("target", required=True)), "target", providers)
    return AliasTarget(target, weight=sub.number("weight", 1.0), priority=sub.integer("priority", None))


def _target(f: Fields, target: str, key: str, providers: set[str]) -> str:
    provider, sep, model = target.partition("/")
    if not sep or not model:
        raise f.error(f"must be 'provider/model', got {target!r}.", key)
    if provider not in providers and provider != "ollama":
        known = ", ".join(sorted(providers)) or "(none)"
        raise f.error(f"names provider '{provider}', which is not defined. Defined providers: {known}.", key)
    return target


def parse_strategy(f: Fields, given: str) -> str:
    """corral's name for the strategy ``given`` (its own, or another gateway's: round-robin,
    least-connections, simple-shuffle...), so nothing after the loader sees an alias."""
    key = given.strip().lower().replace("-", "_")
    name = key if key in STRATEGIES else STRATEGY_ALIASES.get(key)
    if name is None:
        own = [s.replace("_", "-") for s in STRATEGIES if "_" in s]
        dashed = [*own, *(a.replace("_", "-") for a in STRATEGY_ALIASES)]
        raise f.error(
            f"must be one of {', '.join(STRATEGIES)}, or another gateway's name for one "
            f"({', '.join(dashed)}; '-' or '_', any case), got {given!r}.",
            "strategy",
        )
    return name


def parse_router(f: Fields) -> RouterConfig:
    f.reject_unknown(_ROUTER_KEYS)
    d = RouterConfig()
    strategy = parse_strategy(f, f.string("strategy", d.strategy) or d.strategy)
    levels_raw = f.data.get("power_levels") or {}
    if not isinstance(levels_raw, dict):
        raise f.error("must map eco / balanced / precision to lists of model names.", "power_levels")
    levels: dict[str, tuple[str, ...]] = {}
    sub = f.child(levels_raw, "power_levels")
    for level in levels_raw:
        if level not in POWER_LEVELS:
            raise sub.error(f"unknown power level '{level}'; use {', '.join(POWER_LEVELS)}.", str(level))
        names = sub.strings(str(level))
        if not names:
            raise sub.error("must list at least one model.", str(level))
        levels[str(level)] = tuple(names)
    ft = f.data.get("first_token") or {}
    if not isinstance(ft, dict):
        raise f.error("must be a mapping: {multiplier: 3, min: 500ms, max: 30s}.", "first_token")
    first = f.child(ft, "first_token")
    first.reject_unknown(_FIRST_TOKEN_KEYS)
    return RouterConfig(
        strategy=strategy,
        default_fallbacks=tuple(f.strings("default_fallbacks") or ()),
        failover_timeout=f.duration("failover_timeout", d.failover_timeout),
        request_timeout=f.duration("request_timeout", d.request_timeout),
        max_attempts=f.integer("max_attempts", d.max_attempts, minimum=1) or d.max_attempts,
        retry_budget_percent=f.number("retry_budget_percent", d.retry_budget_percent),
        retry_budget_min=f.integer("retry_budget_min", d.retry_budget_min, minimum=0) or 0,
        queue_timeout=f.duration("queue_timeout", d.queue_timeout),
        warm_wait=f.duration("warm_wait", d.warm_wait),
        health_interval=f.duration("health_interval", d.health_interval),
        health_timeout=f.duration("health_timeout", d.health_timeout),
        eject_after=f.integer("eject_after", d.eject_after, minimum=1) or d.eject_after,
        eject_base=f.duration("eject_base", d.eject_base),
        eject_max=f.duration("eject_max", d.eject_max),
        busy_backoff=f.duration("busy_backoff", d.busy_backoff),
        power_levels=levels,
        first_token_multiplier=first.number("multiplier", d.first_token_multiplier, minimum=1.0),
        first_token_min=first.duration("min", d.first_token_min),
        first_token_max=first.duration("max", 0.0) or None,
        load_timeout=f.duration("load_timeout", d.load_timeout),
        hedge_after=parse_hedge(f),
        rules=parse_rules(f),
        **fit.router_fields(f),
    )


def check_chains(
    source: str, models: Iterable[ModelAlias], router: RouterConfig, providers: set[str]
) -> None:
    """Every chain name is routable, explicit_only models stay out of chains, no chain loops."""
    by_name = {m.name: m for m in models}

    def known(name: str, where: str) -> None:
        provider, sep, model = name.partition("/")
        if name in by_name or (sep and model and (provider in providers or provider == "ollama")):
            if name in by_name and by_name[name].explicit_only:
                raise ConfigError(
                    f"{source}: {where}: '{name}' is explicit_only, so it cannot be a fallback or "
                    "part of a power level. Call it directly, or remove explicit_only."
                )
            return
        raise ConfigError(
            f"{source}: {where}: '{name}' is not a model alias or a provider/model name. "
            f"Aliases defined: {', '.join(sorted(by_name)) or '(none)'}."
        )

    for i, m in enumerate(models):
        for j, name in enumerate(m.fallbacks):
            known(name, f"models[{i}].fallbacks[{j}]")
    for j, name in enumerate(router.default_fallbacks):
        known(name, f"router.default_fallbacks[{j}]")
    for i, m in enumerate(models):
        for j, name in enumerate(m.context_window_fallbacks):
            known(name, f"models[{i}].context_window_fallbacks[{j}]")
    for j, name in enumerate(router.context_window_fallbacks):
        known(name, f"router.context_window_fallbacks[{j}]")
    for level, names in router.power_levels.items():
        for j, name in enumerate(names):
            known(name, f"router.power_levels.{level}[{j}]")
    for j, rule in enumerate(router.rules):
        known(rule.model, f"router.rules[{j}] ({rule.level}, tier {rule.tier})")

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            loop = " -> ".join([*path[path.index(name) :], name])
            raise ConfigError(
                f"{source}: models: fallback chain loops: {loop}. Remove one of these fallbacks."
            )
        alias = by_name.get(name)
        for nxt in alias.fallbacks if alias else ():
            visit(nxt, [*path, name])

    for name in by_name:
        visit(name, [])
