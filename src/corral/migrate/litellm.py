"""``convert_litellm``: a LiteLLM proxy ``config.yaml`` to a corral config and its report.

The pieces: ``deployments`` (``model_list``: providers, pools, prices) and ``settings`` (the
settings sections: router, fallbacks, master key, database, Redis). This module joins them:
fallback chains onto aliases (dropping, with a report entry, what was not mapped), the
models that are nobody's fallback (reported, never guessed ``explicit_only``), cost-based
ranking, and the YAML the result is written as. The result is checked with corral's own
loader before it is handed back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from corral.config.loader import parse_config
from corral.errors import ConfigError
from corral.migrate import deployments, located, settings
from corral.migrate.deployments import Deployments, Member, Pool
from corral.migrate.report import Report, UnreadableSource
from corral.migrate.settings import Settings

SECTIONS = (
    "model_list",
    "litellm_settings",
    "router_settings",
    "general_settings",
    "environment_variables",
    "credential_list",
)
PLACEHOLDER = "corral-import-check-placeholder-value"
_ENV = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Conversion:
    source: str
    config: dict[str, Any]
    report: Report
    env_refs: set[str] = field(default_factory=set)
    problem: str | None = None  # set when the result does not validate (a bug in the importer)

    @property
    def summary(self) -> dict[str, int]:
        return {
            "providers": len(self.config.get("providers", [])),
            "aliases": len(self.config.get("models", [])),
            "prices": len(self.config.get("prices", {})),
        }

    def yaml_text(self) -> str:
        head = [
            f"# corral config converted from the LiteLLM config {self.source} by `corral import litellm`.",
            "# Check it with `corral check --config FILE`; the import report says what changed.",
        ]
        if self.env_refs:
            head.append("# It reads these environment variables: " + ", ".join(sorted(self.env_refs)) + ".")
        body = yaml.safe_dump(self.config, sort_keys=False, default_flow_style=False, allow_unicode=True)
        return "\n".join(head) + "\n" + body


def convert_litellm(text: str, source: str) -> Conversion:
    """Convert; ``UnreadableSource`` when ``text`` is not a LiteLLM config at all."""
    data, lines = located.load(text, source)
    if not isinstance(data, Mapping):
        raise UnreadableSource(
            f"{source}: is not a LiteLLM proxy config: expected a mapping with model_list at the top, "
            f"got {'an empty file' if data is None else type(data).__name__}."
        )
    if not any(key in data for key in SECTIONS):
        raise UnreadableSource(
            f"{source}: is not a LiteLLM proxy config: none of {', '.join(SECTIONS)} is at the top level."
        )
    report = Report(source)
    for key in data:
        if key not in SECTIONS:
            why = (
                "corral reads one file: merge the included files into this one and import again."
                if key == "include"
                else "no corral equivalent; left out."
            )
            report.add("unmapped", lines.of(str(key)), str(key), why)
    found = settings.convert(data, lines, report)
    deps = deployments.convert(data.get("model_list"), lines, report, found.credentials)
    config = _assemble(deps, found, report)
    refs = deps.env_refs | found.env_refs | _references(config)
    conversion = Conversion(source, config, report, refs)
    conversion.problem = validate(config, refs, source)
    return conversion


def _assemble(deps: Deployments, found: Settings, report: Report) -> dict[str, Any]:
    pools = deps.pools
    for alias, group, line in found.group_aliases:
        if group in pools and alias not in pools:
            copied = Pool(alias, line, list(pools[group].members), pools[group].num_ctx)
            pools[alias] = copied
            report.add(
                "changed",
                line,
                f"router_settings.model_group_alias.{alias}",
                f"-> alias '{alias}' with the same targets as '{group}'.",
            )
        else:
            why = "is already a model_name" if alias in pools else f"'{group}' is not a converted model"
            report.add("unmapped", line, f"router_settings.model_group_alias.{alias}", f"skipped: {why}.")
    chains = _fallbacks(deps, found, report)
    defaults = _chain(found.default_fallbacks, deps, report, found.default_line, "default_fallbacks")
    if found.cost_based:
        _rank_by_cost(pools)
    models = [_alias(pool, chains.get(pool.name, []), report) for pool in pools.values()]
    _nobodys_fallback(pools, chains, defaults, report)
    router = dict(found.router)
    if defaults:
        router["default_fallbacks"] = defaults
    if not found.strategy_given and any(len(p.members) > 1 for p in pools.values()):
        report.add(
            "choice",
            None,
            "router_settings.routing_strategy",
            "LiteLLM's default routing is simple-shuffle (random, weighted); corral's default is "
            "warm (an instance that has the model loaded, then the least busy). Add "
            "router: {strategy: weighted} to keep shuffling.",
        )
    providers = []
    for draft in deps.providers.values():
        if draft.type == "ollama" and "max_parallel" not in draft.settings:
            report.add(
                "changed",
                draft.line,
                f"provider {draft.name}",
                "corral sends at most 4 requests at once to an Ollama provider unless max_parallel "
                "says otherwise (LiteLLM sets no cap); raise it for Ollama Cloud or a big server.",
            )
        providers.append(draft.as_config())
    config: dict[str, Any] = {
        k: found.top[k] for k in ("master_key", "database_url", "redis_url") if k in found.top
    }
    config["providers"] = providers
    config["models"] = models
    if router:
        config["router"] = router
    prices = _prices(pools, report)
    if prices:
        config["prices"] = prices
    return config


def _fallbacks(deps: Deployments, found: Settings, report: Report) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for name, chain, line in found.fallbacks:
        where = f"fallbacks.{name}"
        if name not in deps.pools:
            why = "was not converted (see above)" if name in deps.dropped else "is not a model_name"
            report.add("unmapped", line, where, f"the chain of '{name}' is left out: '{name}' {why}.")
            continue
        kept = _chain(chain, deps, report, line, where)
        merged = chains.setdefault(name, [])
        merged += [c for c in kept if c not in merged and c != name]
        if kept:
            report.add("mapped", line, where, f"-> alias '{name}' fallbacks: {', '.join(kept)}.")
    return chains


def _chain(chain: list[str], deps: Deployments, report: Report, line: int | None, where: str) -> list[str]:
    kept = []
    for item in chain:
        if item in deps.pools:
            kept.append(item)
        else:
            why = "was not converted" if item in deps.dropped else "is not a model_name of this config"
            report.add("unmapped", line, where, f"fallback '{item}' is left out of the chain: it {why}.")
    return kept


def _alias(pool: Pool, fallbacks: list[str], report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {"name": pool.name}
    members: list[Member] = []
    for m in pool.members:
        if any(o.target == m.target for o in members):
            report.add(
                "changed",
                m.line,
                f"model_list '{pool.name}'",
                f"{m.target} is listed twice for '{pool.name}'; corral keeps one (a deployment is a "
                "provider and a model).",
            )
            continue
        members.append(m)
    plain = all(m.weight is None and m.priority is None for m in members)
    if len(members) == 1:  # a weight or priority means nothing without another member
        out["target"] = members[0].target
    elif plain:
        out["targets"] = [m.target for m in members]
    else:
        out["targets"] = []
        for m in members:
            item: dict[str, Any] = {"target": m.target}
            if m.weight is not None:
                item["weight"] = m.weight
            if m.priority is not None:
                item["priority"] = m.priority
            out["targets"].append(item)
    if len(members) > 1:
        report.add(
            "mapped",
            pool.line,
            f"model_list '{pool.name}'",
            f"{len(members)} deployments of '{pool.name}' -> one pool: "
            f"{', '.join(m.target for m in members)}.",
        )
    if fallbacks:
        out["fallbacks"] = fallbacks
    if pool.num_ctx is not None:
        out["num_ctx"] = pool.num_ctx
    return out


def _nobodys_fallback(
    pools: Mapping[str, Pool], chains: Mapping[str, list[str]], defaults: list[str], report: Report
) -> None:
    if not chains and not defaults:
        return
    used = set(defaults) | {name for chain in chains.values() for name in chain}
    alone = [name for name in pools if name not in used]
    if alone:
        report.add(
            "choice",
            None,
            "fallbacks",
            f"nobody's fallback: {', '.join(alone)}. corral reaches these only when a client names "
            "them. If one must only ever be used by name (kept for explicit use), add "
            "explicit_only: true to its alias; that also keeps it out of chains added later. "
            "Nothing was guessed.",
        )


def _rank_by_cost(pools: Mapping[str, Pool]) -> None:
    for pool in pools.values():
        ranked = sorted(
            pool.members,
            key=lambda m: (not m.cost, m.cost.get("input", 0.0) + m.cost.get("output", 0.0)),
        )
        for rank, member in enumerate(ranked):
            member.priority = rank


def _prices(pools: Mapping[str, Pool], report: Report) -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for pool in pools.values():
        for m in pool.members:
            if not m.cost:
                continue
            model = m.target.partition("/")[2]
            price = {"input": m.cost.get("input", 0.0), "output": m.cost.get("output", 0.0)}
            if len(m.cost) == 1:
                side = "output" if "input" in m.cost else "input"
                report.add(
                    "changed",
                    m.cost_line or m.line,
                    f"model_list '{pool.name}'",
                    f"only one side of {model}'s price is given; {side} is priced at 0.",
                )
            if model in prices and prices[model] != price:
                report.add(
                    "changed",
                    m.cost_line or m.line,
                    f"model_list '{pool.name}'",
                    f"{model} is priced differently on two deployments; prices: keeps the first "
                    f"({prices[model]}). Give each its own price in the catalog.",
                )
                continue
            if model not in prices:
                report.add(
                    "changed",
                    m.cost_line or m.line,
                    f"model_list '{pool.name}'",
                    f"{model}: USD per token -> prices: {{input: {price['input']:g}, output: "
                    f"{price['output']:g}}} USD per million tokens.",
                )
            prices[model] = price
    return prices


def _references(value: Any) -> set[str]:
    if isinstance(value, str):
        return {a or b for a, b in _ENV.findall(value)}
    if isinstance(value, Mapping):
        return set().union(*(_references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    return set()


def validate(config: Mapping[str, Any], env_refs: set[str], source: str) -> str | None:
    """None if corral's loader accepts ``config`` (every referenced variable set to a
    placeholder), else its message."""
    env = dict.fromkeys(env_refs, PLACEHOLDER)
    try:
        parse_config(yaml.safe_load(yaml.safe_dump(dict(config))), source=source, env=env)
    except ConfigError as exc:
        return str(exc)
    return None
