"""The price table: exact names, globs and their precedence, provider types, local and unknown models."""

from __future__ import annotations

import pytest

from corral.errors import ConfigError
from corral.usage import PriceTable

TABLE = PriceTable.from_config(
    {
        "gpt-4o*": {"input": 2.5, "output": 10},
        "gpt-4o-mini*": {"input": 0.15, "output": 0.6},
        "gpt-*": {"input": 1, "output": 2},
        "claude-?-opus": {"input": 15, "output": 75, "provider_types": ["openai"]},
        "Llama3:70B": {"input": 0.5, "output": 0.5},
        "cloud-*": {"input": 2, "output": 4, "provider_types": ["ollama"]},
    }
)


def test_cost_is_usd_per_million_tokens() -> None:
    assert TABLE.cost("gpt-4o-2024-08-06", "openai", 1_000_000, 0) == pytest.approx(2.5)
    assert TABLE.cost("gpt-4o-2024-08-06", "openai", 2000, 1000) == pytest.approx(
        (2000 * 2.5 + 1000 * 10) / 1e6
    )


def test_the_most_specific_glob_wins() -> None:
    assert TABLE.cost("gpt-4o-mini-2024-07-18", "openai", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert TABLE.cost("gpt-3.5-turbo", "openai", 1_000_000, 0) == pytest.approx(1)


def test_ties_keep_the_configured_order_and_exact_names_win() -> None:
    table = PriceTable.from_config(
        {"a*": {"input": 1, "output": 0}, "*b": {"input": 2, "output": 0}, "ab": {"input": 3, "output": 0}}
    )
    assert table.cost("axb", "openai", 1_000_000, 0) == 1
    assert table.cost("ab", "openai", 1_000_000, 0) == 3


def test_matching_ignores_case() -> None:
    assert TABLE.cost("GPT-4O", "openai", 1_000_000, 0) == pytest.approx(2.5)
    assert TABLE.cost("llama3:70b", "ollama", 1_000_000, 0) == pytest.approx(0.5)


def test_local_models_cost_nothing_unless_priced_on_purpose() -> None:
    assert TABLE.cost("gpt-oss:20b", "ollama", 10_000, 10_000) == 0.0  # "gpt-*" is for clouds
    assert TABLE.cost("gpt-oss:20b", "demo", 10_000, 10_000) == 0.0
    assert TABLE.cost("llama3:70b", "ollama", 1_000_000, 0) == pytest.approx(0.5)  # exact name
    assert TABLE.cost("cloud-big", "ollama", 1_000_000, 0) == pytest.approx(2)  # provider_types names it
    assert TABLE.cost("gpt-oss:20b", "openai", 1_000_000, 0) == pytest.approx(1)  # same name on a cloud


def test_provider_types_restrict_an_entry() -> None:
    assert TABLE.cost("claude-3-opus", "openai", 1_000_000, 0) == pytest.approx(15)
    assert not TABLE.is_priced("claude-3-opus", "ollama")
    assert not TABLE.is_priced("cloud-big", "openai")


def test_unknown_models_cost_zero() -> None:
    assert TABLE.cost("mystery-model", "openai", 5000, 5000) == 0.0
    assert TABLE.cost(None, None, 5000, 5000) == 0.0
    assert PriceTable().cost("gpt-4o", "openai", 5000, 5000) == 0.0
    assert len(PriceTable.from_config(None)) == 0
    assert len(TABLE) == 6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["gpt-4o"], "must be a mapping"),
        ({"gpt-4o": 2.5}, "mapping like"),
        ({"gpt-4o": {"input": 1}}, r"prices\.gpt-4o\.output is missing"),
        ({"gpt-4o": {"input": -1, "output": 1}}, "0 or more"),
        ({"gpt-4o": {"input": "cheap", "output": 1}}, "number of USD"),
        ({"gpt-4o": {"input": 1, "output": 1, "currency": "EUR"}}, "unknown field"),
        ({"gpt-4o": {"input": 1, "output": 1, "provider_types": "openai"}}, "non-empty list"),
        ({" ": {"input": 1, "output": 1}}, "non-empty string"),
    ],
)
def test_bad_config_says_what_to_fix(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PriceTable.from_config(data)  # type: ignore[arg-type]
