"""plan(): the requested pool, then its fallbacks transitively, each once, at most MAX_POOLS."""

from __future__ import annotations

import pytest

from corral.config.schema import AliasTarget, ModelAlias
from corral.core.call import ModelInfo, Target
from corral.core.catalog import Catalog, ProviderEntry
from corral.errors import ModelNotFound
from corral.routing.planner import MAX_POOLS, plan

PROVIDERS = [
    ProviderEntry("cloud", "ollama"),
    ProviderEntry("gpu", "ollama"),
    ProviderEntry("vllm", "openai"),
    ProviderEntry("off", "ollama", enabled=False),
]


def alias(name: str, target: str, *fallbacks: str, explicit_only: bool = False) -> ModelAlias:
    return ModelAlias(name, (AliasTarget(target),), fallbacks=fallbacks, explicit_only=explicit_only)


def catalog(*aliases: ModelAlias, default_fallbacks: tuple[str, ...] = ()) -> Catalog:
    cat = Catalog(PROVIDERS, aliases, default_fallbacks)
    cat.update("gpu", [ModelInfo("qwen3:8b"), ModelInfo("llama3.2:latest")])
    return cat


def names(routes: list) -> list[str]:  # type: ignore[type-arg]
    return [r.name for r in routes]


def test_requested_route_alone_when_it_has_no_fallbacks() -> None:
    routes = plan(catalog(alias("kimi", "cloud/kimi-k2.5")), "kimi", {})
    assert names(routes) == ["kimi"]
    assert routes[0].targets == (Target("cloud", "kimi-k2.5"),)


def test_fallbacks_follow_in_order_and_transitively_depth_first() -> None:
    cat = catalog(
        alias("a", "cloud/a", "b", "c"),
        alias("b", "cloud/b", "d"),
        alias("c", "cloud/c", "e"),
        alias("d", "cloud/d"),
        alias("e", "cloud/e"),
    )
    assert names(plan(cat, "a", {})) == ["a", "b", "d", "c", "e"]
    assert names(plan(cat, "b", {})) == ["b", "d"]


def test_each_name_appears_once_even_with_loops_and_diamonds() -> None:
    cat = catalog(
        alias("a", "cloud/a", "b", "c"),
        alias("b", "cloud/b", "d", "a"),
        alias("c", "cloud/c", "d", "b"),
        alias("d", "cloud/d", "a", "c"),
    )
    assert names(plan(cat, "a", {})) == ["a", "b", "d", "c"]


def test_provider_model_names_and_discovered_models_can_be_fallbacks() -> None:
    cat = catalog(alias("kimi", "cloud/kimi-k2.5", "vllm/qwen2.5-coder-32b", "qwen3:8b"))
    routes = plan(cat, "kimi", {})
    assert names(routes) == ["kimi", "vllm/qwen2.5-coder-32b", "qwen3:8b"]
    assert routes[1].targets == (Target("vllm", "qwen2.5-coder-32b"),)
    assert [t.provider for t in routes[2].targets] == ["gpu"]


def test_fallback_that_does_not_resolve_is_skipped() -> None:
    cat = catalog(
        alias("a", "cloud/a", "gone", "off/secret", "on-off", "b"),
        alias("on-off", "off/x"),
        alias("b", "cloud/b"),
    )
    assert names(plan(cat, "a", {})) == ["a", "b"]


def test_unresolvable_fallbacks_fallbacks_are_not_followed() -> None:
    cat = catalog(alias("a", "cloud/a", "dead"), alias("dead", "off/x", "b"), alias("b", "cloud/b"))
    assert names(plan(cat, "a", {})) == ["a"]


def test_requested_name_not_resolving_raises_with_suggestions() -> None:
    cat = catalog(alias("kimi", "cloud/kimi-k2.5"))
    with pytest.raises(ModelNotFound) as info:
        plan(cat, "qwen3:7b", {})
    assert info.value.model == "qwen3:7b"
    assert "qwen3:8b" in info.value.suggestions
    with pytest.raises(ModelNotFound):
        plan(catalog(alias("dead", "off/x", "kimi"), alias("kimi", "cloud/k")), "dead", {})


def test_at_most_max_pools() -> None:
    chain = [alias(f"m{i}", f"cloud/m{i}", f"m{i + 1}") for i in range(MAX_POOLS + 4)]
    routes = plan(catalog(*chain), "m0", {})
    assert names(routes) == [f"m{i}" for i in range(MAX_POOLS)]
    leaves = [alias(f"w{i}", f"cloud/w{i}") for i in range(12)]
    wide = catalog(alias("root", "cloud/r", *(leaf.name for leaf in leaves)), *leaves)
    assert names(plan(wide, "root", {})) == ["root", *(f"w{i}" for i in range(MAX_POOLS - 1))]


def test_default_fallbacks_apply_to_unaliased_names_and_plain_aliases() -> None:
    cat = catalog(
        alias("kimi", "cloud/kimi"),
        alias("own", "cloud/own", "kimi"),
        alias("local", "gpu/qwen3:8b"),
        default_fallbacks=("local",),
    )
    assert names(plan(cat, "kimi", {})) == ["kimi", "local"]
    assert names(plan(cat, "vllm/x", {})) == ["vllm/x", "local"]
    assert names(plan(cat, "own", {})) == ["own", "kimi", "local"]
    assert names(plan(cat, "local", {})) == ["local"]  # never its own fallback


def test_explicit_only_alias_gets_no_default_fallbacks() -> None:
    gpt = alias("gpt", "vllm/gpt-4o", explicit_only=True)
    cat = catalog(gpt, alias("local", "gpu/qwen3:8b"), default_fallbacks=("local",))
    assert names(plan(cat, "gpt", {})) == ["gpt"]


# power levels ------------------------------------------------------------------------------


def test_power_level_expands_its_members_and_their_fallbacks() -> None:
    cat = catalog(
        alias("small", "gpu/qwen3:8b", "tiny"), alias("tiny", "gpu/llama3.2"), alias("big", "cloud/b")
    )
    levels = {"eco": ("small", "big"), "precision": ("big",)}
    assert names(plan(cat, "corral/eco", levels)) == ["small", "tiny", "big"]
    assert names(plan(cat, "corral/precision", levels)) == ["big"]


def test_power_level_skips_members_that_do_not_resolve() -> None:
    cat = catalog(alias("dead", "off/x"), alias("big", "cloud/b"))
    assert names(plan(cat, "corral/eco", {"eco": ("dead", "nothing", "big")})) == ["big"]
    with pytest.raises(ModelNotFound):
        plan(cat, "corral/eco", {"eco": ("dead", "nothing")})


def test_unknown_or_unconfigured_power_level_is_model_not_found() -> None:
    cat = catalog(alias("big", "cloud/b"))
    levels = {"eco": ("big",), "balanced": ("big",)}
    with pytest.raises(ModelNotFound) as info:
        plan(cat, "corral/turbo", levels)
    assert info.value.model == "corral/turbo"
    assert info.value.suggestions == ["corral/eco", "corral/balanced"]
    with pytest.raises(ModelNotFound):
        plan(cat, "corral/precision", levels)
    with pytest.raises(ModelNotFound):
        plan(cat, "corral/eco", {})
