"""Model resolution: alias, provider/model, ollama/model, bare names, close matches."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest

from corral.config.schema import AliasTarget, ModelAlias
from corral.core.call import ModelInfo, Target
from corral.core.catalog import MAX_NAME, Catalog, ProviderEntry
from corral.errors import ModelNotFound


def catalog() -> Catalog:
    cat = Catalog(
        [
            ProviderEntry("gpu", "ollama", priority=0),
            ProviderEntry("laptop", "ollama", priority=5),
            ProviderEntry("vllm", "openai", priority=1),
            ProviderEntry("off", "ollama", enabled=False),
        ],
        [
            ModelAlias("fast", (AliasTarget("gpu/llama3.2:1b"),)),
            ModelAlias("any-qwen", (AliasTarget("ollama/qwen3:8b"),)),
        ],
    )
    cat.update("gpu", [ModelInfo("llama3.2:latest"), ModelInfo("qwen3:8b")])
    cat.update("laptop", [ModelInfo("qwen3:8b")])
    cat.update("vllm", [ModelInfo("qwen3:8b"), ModelInfo("Qwen/Qwen2.5-7B")])
    cat.update("off", [ModelInfo("secret:latest")])
    return cat


def pairs(targets: list[Target]) -> list[Target]:
    return [Target(t.provider, t.model) for t in targets]


def test_alias_wins() -> None:
    assert pairs(catalog().resolve("fast")) == [Target("gpu", "llama3.2:1b")]


def test_provider_slash_model_is_direct_even_if_undiscovered() -> None:
    assert pairs(catalog().resolve("laptop/mistral")) == [Target("laptop", "mistral")]


def test_ollama_prefix_means_every_ollama_provider_with_the_model_by_priority() -> None:
    assert pairs(catalog().resolve("ollama/qwen3:8b")) == [
        Target("gpu", "qwen3:8b"),
        Target("laptop", "qwen3:8b"),
    ]
    assert pairs(catalog().resolve("any-qwen")) == [Target("gpu", "qwen3:8b"), Target("laptop", "qwen3:8b")]


def test_bare_name_spans_types_and_latest_tag_is_optional() -> None:
    cat = catalog()
    assert pairs(cat.resolve("qwen3:8b")) == [
        Target("gpu", "qwen3:8b"),
        Target("vllm", "qwen3:8b"),
        Target("laptop", "qwen3:8b"),
    ]
    assert pairs(cat.resolve("llama3.2")) == [Target("gpu", "llama3.2:latest")]
    assert pairs(cat.resolve("Qwen/Qwen2.5-7B")) == [Target("vllm", "Qwen/Qwen2.5-7B")]


def test_disabled_provider_serves_nothing() -> None:
    cat = catalog()
    with pytest.raises(ModelNotFound):
        cat.resolve("secret")
    with pytest.raises(ModelNotFound):
        cat.resolve("off/secret")


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelNotFound) as info:
        catalog().resolve("llama3.3")
    assert "llama3.2" in info.value.suggestions
    assert "GET /v1/models" in info.value.message


def test_update_invalidates_cached_resolutions() -> None:
    cat = catalog()
    assert pairs(cat.resolve("qwen3:8b"))[0] == Target("gpu", "qwen3:8b")
    cat.update("gpu", [])
    assert pairs(cat.resolve("qwen3:8b"))[0] == Target("vllm", "qwen3:8b")


def test_listing_has_aliases_then_provider_model_ids() -> None:
    ids = [row.id for row in catalog().listing()]
    assert ids[:2] == ["fast", "any-qwen"]
    assert "gpu/llama3.2:latest" in ids and "vllm/Qwen/Qwen2.5-7B" in ids
    assert not any(i.startswith("off/") for i in ids)


def test_pool_alias_keeps_weights_priorities_and_fallbacks() -> None:
    pool = ModelAlias(
        "pool",
        (AliasTarget("gpu/qwen3:8b", weight=3), AliasTarget("vllm/qwen3:8b", priority=9)),
        fallbacks=("fast",),
        strategy="weighted",
        num_ctx=8192,
    )
    cat = Catalog(
        [ProviderEntry("gpu", "ollama", priority=2), ProviderEntry("vllm", "openai")],
        [pool],
        default_fallbacks=("other",),
    )
    route = cat.route("pool")
    assert [(t.provider, t.priority, t.weight) for t in route.targets] == [("gpu", 2, 3.0), ("vllm", 9, 1.0)]
    assert route.fallbacks == ("fast",) and route.strategy == "weighted" and route.num_ctx == 8192
    assert cat.route("gpu/x").fallbacks == () and cat.default_fallbacks == ("other",)


# the route cache: bounded, and never holding a name only a client made up ----------------------


def _retained(fn: Callable[[], None]) -> int:
    """Bytes still allocated after ``fn`` ran (and its garbage went)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_names_nobody_serves_are_not_kept() -> None:
    # 'gpu/<anything>' routes to gpu without a lookup: the audit's 100 unique 1 MiB names stayed
    cat = catalog()

    def flood() -> None:
        for i in range(50):
            assert cat.route(f"gpu/{i}-" + "x" * 64 * 1024).targets

    assert _retained(flood) < 256 * 1024  # 50 names of 64 KiB: 3.2 MiB if they were cached


def test_known_names_are_cached_and_the_least_recently_used_goes_first() -> None:
    cat = Catalog(
        [ProviderEntry("gpu", "ollama")],
        [ModelAlias("fast", (AliasTarget("gpu/llama3.2:1b"),))],
        cache_size=2,
    )
    cat.update("gpu", [ModelInfo("a:latest"), ModelInfo("b:latest")])
    fast, a = cat.route("fast"), cat.route("gpu/a:latest")
    assert cat.route("fast") is fast and cat.route("gpu/a:latest") is a  # cached
    cat.route("fast")  # now the most recently used
    cat.route("b")  # a third: evicts gpu/a:latest
    assert cat.route("fast") is fast
    assert cat.route("gpu/a:latest") is not a and cat.route("gpu/a:latest") == a


def test_a_long_unknown_name_gets_no_suggestions() -> None:
    # difflib's cost grows with the name's length; nobody serves a name this long
    with pytest.raises(ModelNotFound) as info:
        catalog().resolve("llama3.2" + "x" * (MAX_NAME + 1))
    assert info.value.suggestions == []
