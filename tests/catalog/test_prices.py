"""Costs come from the catalog first (per provider and model), then from ``prices:``."""

from __future__ import annotations

from corral.usage.prices import CatalogModel, CatalogSnapshot, PriceTable, catalog_price


def table() -> PriceTable:
    prices = PriceTable.from_config(
        {
            "gpt-4o": {"input": 2.5, "output": 10},
            "llama*": {"input": 9, "output": 9, "provider_types": ["ollama"]},
        }
    )
    prices.use_catalog(
        CatalogSnapshot(
            [
                CatalogModel("openai", "gpt-4o", price=catalog_price("gpt-4o", 2.0, 8.0)),
                CatalogModel("cloud", "llama3.2:latest", price=catalog_price("llama3.2", 0.1, None)),
                CatalogModel("cloud", "unpriced", price=None),
            ]
        )
    )
    return prices


def test_the_catalog_price_of_the_serving_provider_wins() -> None:
    prices = table()
    assert prices.cost("gpt-4o", "openai", 1_000_000, 1_000_000, "openai") == 10.0  # catalog: 2 + 8
    assert prices.cost("gpt-4o", "openai", 1_000_000, 1_000_000, "azure-proxy") == 12.5  # prices:
    assert prices.cost("gpt-4o", "openai", 1_000_000, 1_000_000) == 12.5  # no provider known


def test_latest_tags_match_and_a_missing_side_is_free() -> None:
    prices = table()
    assert prices.cost("llama3.2", "ollama", 1_000_000, 1_000_000, "cloud") == 0.1
    assert prices.cost("llama3.2:latest", "ollama", 1_000_000, 0, "cloud") == 0.1


def test_an_entry_without_price_falls_back_to_prices() -> None:
    prices = table()
    prices.use_catalog(CatalogSnapshot([CatalogModel("cloud", "llama3.2", price=None)]))
    assert prices.cost("llama3.2", "ollama", 1_000_000, 0, "cloud") == 9.0
    assert catalog_price("x", None, None) is None


def test_an_exact_price_covers_the_latest_tag() -> None:
    """Ollama serves ``kimi-k2.5`` as ``kimi-k2.5:latest``: a price for one is a price for both."""
    prices = PriceTable.from_config(
        {"kimi-k2.5": {"input": 5, "output": 5}, "qwen3:latest": {"input": 1, "output": 1}}
    )
    assert prices.cost("kimi-k2.5:latest", "ollama", 1_000_000, 0) == 5.0
    assert prices.cost("qwen3", "ollama", 1_000_000, 0) == 1.0
