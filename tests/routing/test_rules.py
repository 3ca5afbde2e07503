"""Routing rules by power level and tier: config validation and the planner's choice."""

from __future__ import annotations

import pytest

from corral.config.schema import TierRule
from corral.errors import ConfigError, ModelNotFound
from corral.routing import planner, rules
from corral.routing.catalog import Catalog, ProviderEntry
from tests.support.gateway import make_config

RULES = (
    TierRule("precision", "gold-model", "gold", 1, 1.0),
    TierRule("precision", "gold-first", "gold", 0, 1.0),
    TierRule("precision", "heavy", "gold", 1, 5.0),
    TierRule("precision", "everyone", "all"),
)


def catalog_of(config: object) -> Catalog:
    from corral.config import Config

    assert isinstance(config, Config)
    entries = [ProviderEntry(p.name, p.type, p.priority) for p in config.providers]
    return Catalog(entries, config.models, config.router.default_fallbacks)


def test_a_tier_gets_its_own_rules_best_first_else_all() -> None:
    assert rules.candidates(RULES, "precision", "gold") == ("gold-first", "heavy", "gold-model")
    assert rules.candidates(RULES, "precision", "free") == ("everyone",)
    assert rules.candidates(RULES, "precision", None) == ("everyone",)
    assert rules.candidates(RULES, "eco", "gold") == ()


CONFIG = {
    "providers": [{"name": "gpu", "type": "ollama", "base_url": "http://127.0.0.1:1"}],
    "models": [{"name": "big", "target": "gpu/big"}, {"name": "small", "target": "gpu/small"}],
}


def test_rules_load_from_yaml_and_drive_the_plan() -> None:
    config = make_config(
        {
            **CONFIG,
            "router": {
                "power_levels": {"precision": ["small"]},
                "rules": [{"level": "precision", "tier": "gold", "models": ["big", "small"], "priority": 2}],
            },
        }
    )
    assert config.router.rules == (
        TierRule("precision", "big", "gold", 2, 1.0),
        TierRule("precision", "small", "gold", 2, 1.0),
    )
    catalog = catalog_of(config)
    plan = planner.plan(catalog, "corral/precision", config.router.power_levels, config.router.rules, "gold")
    assert [r.name for r in plan] == ["big", "small"]
    plain = planner.plan(catalog, "corral/precision", config.router.power_levels, config.router.rules, None)
    assert [r.name for r in plain] == ["small"]  # no 'all' rules for the level: router.power_levels


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"level": "turbo", "model": "big"}, "unknown power level 'turbo'"),
        ({"level": "eco"}, "needs 'model:"),
        ({"level": "eco", "model": "nothing"}, "'nothing' is not a model alias"),
        ({"level": "eco", "model": "big", "colour": "red"}, "colour"),
    ],
)
def test_bad_rules_are_refused_at_load(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config({**CONFIG, "router": {"rules": [rule]}})


def test_first_token_and_hedge_settings_parse() -> None:
    config = make_config(
        {
            **CONFIG,
            "models": [{"name": "big", "target": "gpu/big", "hedge_after": "p95"}],
            "router": {
                "first_token": {"multiplier": 4, "min": "200ms", "max": "10s"},
                "hedge_after": "800ms",
            },
        }
    )
    r = config.router
    assert (r.first_token_multiplier, r.first_token_min, r.first_token_max) == (4.0, 0.2, 10.0)
    assert r.hedge_after == 0.8 and r.load_timeout == 300.0 and config.models[0].hedge_after == "p95"
    with pytest.raises(ConfigError, match="p50, p95, p99"):
        make_config({**CONFIG, "router": {"hedge_after": "p42"}})


def test_an_unknown_level_lists_the_levels_rules_define() -> None:
    catalog = catalog_of(make_config(CONFIG))
    with pytest.raises(ModelNotFound) as info:
        planner.plan(catalog, "corral/balanced", {}, (TierRule("eco", "big"),), None)
    assert info.value.suggestions == ["corral/eco"]
