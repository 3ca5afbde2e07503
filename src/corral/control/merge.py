"""Merge the YAML config with providers, aliases and routing rules managed through the API
(the database); the YAML file's rules come first.

Both are validated by the same code. Database values are never expanded as environment
references (an admin must not be able to read the gateway's environment through a provider
field), and names the YAML file defines cannot be taken by the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from corral.config.fields import Fields
from corral.config.loader import parse_provider
from corral.config.routing import check_chains, parse_alias, parse_rules
from corral.config.schema import Config, ModelAlias, ProviderConfig

API_SOURCE = "database"
NO_ENV: Mapping[str, str] = {}


def provider_from_api(data: Mapping[str, Any]) -> ProviderConfig:
    """Validate a provider as the admin API gives it (flat ProviderConfig fields)."""
    clean = {k: v for k, v in data.items() if v is not None and not (k == "headers" and v == {})}
    return parse_provider(clean, where=f"provider '{data.get('name')}'", source=API_SOURCE, env=NO_ENV)


def alias_from_api(name: str, spec: Mapping[str, Any], providers: Iterable[str]) -> ModelAlias:
    data = {"name": name, **{k: v for k, v in spec.items() if v is not None}}
    return parse_alias(Fields(data, f"alias '{name}'", API_SOURCE, NO_ENV), set(providers))


def merge(
    base: Config,
    providers: Sequence[Mapping[str, Any]],
    aliases: Sequence[tuple[str, Mapping[str, Any]]],
    rules: Sequence[Mapping[str, Any]] = (),
) -> Config:
    """The effective config: YAML first, then API-managed entries. Raises ConfigError."""
    merged_providers: list[ProviderConfig] = list(base.providers)
    taken = {p.name for p in merged_providers}
    for data in providers:
        cfg = provider_from_api(data)
        if cfg.name in taken:
            continue  # a YAML provider wins; the API refuses to create such names anyway
        merged_providers.append(cfg)
        taken.add(cfg.name)
    names = taken | ({"demo"} if base.demo else set())
    models: list[ModelAlias] = list(base.models)
    alias_names = {m.name for m in models}
    for name, spec in aliases:
        if name in alias_names:
            continue
        models.append(alias_from_api(name, spec, names))
        alias_names.add(name)
    router = base.router
    if rules:
        stored = parse_rules(Fields({"rules": list(rules)}, "rules", API_SOURCE, NO_ENV))
        router = replace(router, rules=router.rules + stored)
    check_chains(API_SOURCE, models, router, names)
    return replace(base, providers=tuple(merged_providers), models=tuple(models), router=router)
