"""The routing config: ``models:`` pools and fallbacks, ``router:``, and the start-up chain checks."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from corral.config.loader import parse_config
from corral.config.schema import AliasTarget, Config, RouterConfig
from corral.errors import ConfigError

ISSUE_EXAMPLE = """
providers:
  - {name: ollama-cloud, type: ollama, base_url: "https://ollama.com"}
  - {name: openai, type: openai, base_url: "https://api.openai.com/v1"}
  - {name: vllm, type: openai, base_url: "http://vllm:8000/v1"}
  - {name: gpu, type: ollama, base_url: "http://gpu:11434"}
models:
  - name: cloud-kimi
    target: ollama-cloud/kimi-k2.5
    fallbacks: [cloud-minimax, vllm-qwen, ollama-qwen]
  - {name: cloud-minimax, target: ollama-cloud/minimax-m2.5}
  - {name: vllm-qwen, target: vllm/qwen2.5-coder-32b}
  - {name: ollama-qwen, target: gpu/qwen3:8b}
  - name: openai-gpt4o
    target: openai/gpt-4o
    explicit_only: true
router:
  default_fallbacks: [ollama-qwen]
  failover_timeout: 5s
"""

PROVIDERS = [
    {"name": "gpu", "type": "ollama", "base_url": "http://gpu:11434"},
    {"name": "vllm", "type": "openai", "base_url": "http://vllm:8000/v1"},
]


def load(models: list[Any] | None = None, router: dict[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {"providers": PROVIDERS}
    if models is not None:
        data["models"] = models
    if router is not None:
        data["router"] = router
    return parse_config(data, source="x.yaml", env={})


def error_of(models: list[Any] | None = None, router: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(models, router)
    message = str(info.value)
    assert message.startswith("x.yaml: ")
    return message


# the example from the issue ----------------------------------------------------------------


def test_issue_example_loads_as_written() -> None:
    config = parse_config(yaml.safe_load(ISSUE_EXAMPLE), source="x.yaml", env={})
    by_name = {m.name: m for m in config.models}
    assert list(by_name) == ["cloud-kimi", "cloud-minimax", "vllm-qwen", "ollama-qwen", "openai-gpt4o"]
    kimi = by_name["cloud-kimi"]
    assert kimi.targets == (AliasTarget("ollama-cloud/kimi-k2.5"),)
    assert kimi.fallbacks == ("cloud-minimax", "vllm-qwen", "ollama-qwen")
    assert not kimi.explicit_only and kimi.strategy is None and kimi.num_ctx is None
    assert by_name["ollama-qwen"].target == "gpu/qwen3:8b"
    assert by_name["openai-gpt4o"].explicit_only is True
    assert config.router.default_fallbacks == ("ollama-qwen",)
    assert config.router.failover_timeout == 5.0
    assert config.router.strategy == "warm"
    assert config.router.power_levels == {}


# models ------------------------------------------------------------------------------------


def test_pool_with_weights_priorities_strategy_and_num_ctx() -> None:
    pool = [
        "gpu/qwen3:8b",
        {"target": "vllm/qwen3-8b", "weight": 3, "priority": 1},
        {"target": "ollama/qwen3:8b"},
    ]
    model = {
        "name": "qwen",
        "targets": pool,
        "strategy": "weighted",
        "num_ctx": 8192,
        "fallbacks": ["vllm/other"],
    }
    config = load([model])
    (qwen,) = config.models
    assert qwen.targets == (
        AliasTarget("gpu/qwen3:8b"),
        AliasTarget("vllm/qwen3-8b", weight=3.0, priority=1),
        AliasTarget("ollama/qwen3:8b", weight=1.0, priority=None),
    )
    assert (qwen.strategy, qwen.num_ctx, qwen.fallbacks) == ("weighted", 8192, ("vllm/other",))


@pytest.mark.parametrize("strategy", ["warm", "priority", "round_robin", "weighted", "least_busy", "latency"])
def test_every_strategy_is_accepted(strategy: str) -> None:
    assert load([{"name": "m", "target": "gpu/a", "strategy": strategy}]).models[0].strategy == strategy
    assert load(router={"strategy": strategy}).router.strategy == strategy


@pytest.mark.parametrize(
    ("model", "fragments"),
    [
        (
            {"name": "m", "target": "gpu/a", "targets": ["gpu/b"]},
            ["models[0].targets", "either 'target' or 'targets'"],
        ),
        ({"name": "corral/eco", "target": "gpu/a"}, ["models[0].name", "reserved for power levels"]),
        (
            {"name": "m", "target": "gpu/a", "strategy": "fastest"},
            ["models[0].strategy", "'fastest'", "warm, priority, round_robin"],
        ),
        ({"name": "m"}, ["models[0].target", "needs 'target: provider/model'"]),
        ({"name": "m", "targets": []}, ["models[0].target", "non-empty 'targets:'"]),
        ({"name": "m", "target": "nowhere"}, ["models[0].target", "'provider/model'"]),
        ({"name": "m", "target": "tpu/a"}, ["models[0].target", "'tpu'", "Defined providers: gpu, vllm"]),
        (
            {"name": "m", "targets": ["gpu/a", {"target": "gpu/b", "wieght": 2}]},
            ["models[0].targets[1].wieght", "Did you mean 'weight'"],
        ),
        ({"name": "m", "targets": ["gpu/a", {"target": "x"}]}, ["models[0].targets[1].target"]),
        ({"name": "m", "target": "gpu/a", "num_ctx": 0}, ["models[0].num_ctx", "at least 1"]),
        (
            {"name": "m", "target": "gpu/a", "explicit_only": "yes"},
            ["models[0].explicit_only", "true or false"],
        ),
        (
            {"name": "m", "target": "gpu/a", "fallback": ["x"]},
            ["models[0].fallback", "Did you mean 'fallbacks'"],
        ),
    ],
)
def test_model_entry_errors_name_the_key_and_the_fix(model: dict[str, Any], fragments: list[str]) -> None:
    message = error_of([model])
    for fragment in fragments:
        assert fragment in message


def test_duplicate_model_names_are_rejected() -> None:
    message = error_of([{"name": "m", "target": "gpu/a"}, {"name": "m", "target": "gpu/b"}])
    assert "'m' is used twice" in message and "models[1]" in message


# router ------------------------------------------------------------------------------------


def test_router_defaults() -> None:
    assert load().router == RouterConfig()


def test_every_router_key_is_read_and_durations_parse() -> None:
    router = load(
        [{"name": "a", "target": "gpu/a"}, {"name": "b", "target": "vllm/b"}],
        {
            "strategy": "least_busy",
            "default_fallbacks": ["a"],
            "failover_timeout": "5s",
            "request_timeout": "2m",
            "max_attempts": 3,
            "retry_budget_percent": 50,
            "retry_budget_min": 0,
            "queue_timeout": "500ms",
            "warm_wait": 1.5,
            "health_interval": "1h",
            "health_timeout": "2s",
            "eject_after": 5,
            "eject_base": "10s",
            "eject_max": "10m",
            "busy_backoff": "250ms",
            "power_levels": {"eco": ["a"], "balanced": ["a", "b"], "precision": ["vllm/big"]},
        },
    ).router
    assert router == RouterConfig(
        strategy="least_busy",
        default_fallbacks=("a",),
        failover_timeout=5.0,
        request_timeout=120.0,
        max_attempts=3,
        retry_budget_percent=50.0,
        retry_budget_min=0,
        queue_timeout=0.5,
        warm_wait=1.5,
        health_interval=3600.0,
        health_timeout=2.0,
        eject_after=5,
        eject_base=10.0,
        eject_max=600.0,
        busy_backoff=0.25,
        power_levels={"eco": ("a",), "balanced": ("a", "b"), "precision": ("vllm/big",)},
    )


@pytest.mark.parametrize(
    ("router", "fragments"),
    [
        ({"strategy": "fastest"}, ["router.strategy", "'fastest'", "least_busy"]),
        ({"failover_timeout": "soon"}, ["router.failover_timeout", "positive duration", "'30s'"]),
        ({"queue_timeout": 0}, ["router.queue_timeout", "positive duration"]),
        ({"max_attempts": 0}, ["router.max_attempts", "at least 1"]),
        ({"eject_after": 0}, ["router.eject_after", "at least 1"]),
        ({"failover_timout": "5s"}, ["router.failover_timout", "Did you mean 'failover_timeout'"]),
        ({"power_levels": {"turbo": ["vllm/x"]}}, ["router.power_levels.turbo", "eco, balanced, precision"]),
        ({"power_levels": {"eco": []}}, ["router.power_levels.eco", "at least one model"]),
        ({"power_levels": ["eco"]}, ["router.power_levels", "eco / balanced / precision"]),
        ({"default_fallbacks": "a"}, ["router.default_fallbacks", "must be a list"]),
    ],
)
def test_router_errors_name_the_key_and_the_fix(router: dict[str, Any], fragments: list[str]) -> None:
    message = error_of(router=router)
    for fragment in fragments:
        assert fragment in message


# chain checks ------------------------------------------------------------------------------


def test_fallbacks_may_name_aliases_and_provider_model_pairs() -> None:
    models = [
        {"name": "a", "target": "gpu/a", "fallbacks": ["b", "vllm/x", "ollama/llama3.2"]},
        {"name": "b", "target": "vllm/b"},
    ]
    router = {"default_fallbacks": ["gpu/qwen3:8b"], "power_levels": {"eco": ["b", "ollama/qwen3:8b"]}}
    config = load(models, router)
    assert config.models[0].fallbacks == ("b", "vllm/x", "ollama/llama3.2")


@pytest.mark.parametrize(
    ("fallbacks", "router", "where"),
    [
        (["vllm/x", "missing"], None, "models[0].fallbacks[1]"),
        (["tpu/x"], None, "models[0].fallbacks[0]"),
        ([], {"default_fallbacks": ["a", "missing"]}, "router.default_fallbacks[1]"),
        ([], {"power_levels": {"eco": ["missing"]}}, "router.power_levels.eco[0]"),
    ],
)
def test_unknown_fallback_name(fallbacks: list[str], router: dict[str, Any] | None, where: str) -> None:
    message = error_of([{"name": "a", "target": "gpu/a", "fallbacks": fallbacks}], router)
    assert f"x.yaml: {where}: " in message
    assert "is not a model alias or a provider/model name" in message
    assert "Aliases defined: a" in message


@pytest.mark.parametrize(
    ("models", "router", "where"),
    [
        ([{"name": "a", "target": "gpu/a", "fallbacks": ["gpt"]}], None, "models[0].fallbacks[0]"),
        ([], {"default_fallbacks": ["gpt"]}, "router.default_fallbacks[0]"),
        ([], {"power_levels": {"precision": ["vllm/x", "gpt"]}}, "router.power_levels.precision[1]"),
    ],
)
def test_explicit_only_model_may_not_join_a_chain(
    models: list[Any], router: dict[str, Any] | None, where: str
) -> None:
    gpt = {"name": "gpt", "target": "vllm/gpt-4o", "explicit_only": True}
    message = error_of([*models, gpt], router)
    assert f"x.yaml: {where}: 'gpt' is explicit_only" in message
    assert "remove explicit_only" in message


def test_explicit_only_model_may_have_its_own_fallbacks() -> None:
    config = load([{"name": "gpt", "target": "vllm/gpt-4o", "explicit_only": True, "fallbacks": ["gpu/q"]}])
    assert config.models[0].fallbacks == ("gpu/q",)


@pytest.mark.parametrize(
    ("chains", "loop"),
    [
        ({"a": ["b"], "b": ["a"]}, "a -> b -> a"),
        ({"a": ["a"]}, "a -> a"),
        ({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, "a -> b -> c -> a"),
    ],
)
def test_fallback_cycle_is_rejected_and_the_loop_shown(chains: dict[str, list[str]], loop: str) -> None:
    models = [{"name": n, "target": f"gpu/{n}", "fallbacks": fb} for n, fb in chains.items()]
    message = error_of(models)
    assert f"fallback chain loops: {loop}." in message
    assert "x.yaml: models: " in message and "Remove one of these fallbacks" in message


def test_shared_fallbacks_without_a_loop_are_fine() -> None:
    models = [
        {"name": "a", "target": "gpu/a", "fallbacks": ["b", "c"]},
        {"name": "b", "target": "gpu/b", "fallbacks": ["c"]},
        {"name": "c", "target": "gpu/c"},
    ]
    assert [m.name for m in load(models).models] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("round-robin", "round_robin"),  # Olla
        ("least-connections", "least_busy"),  # Olla
        ("least-busy", "least_busy"),  # LiteLLM
        ("latency-based-routing", "latency"),  # LiteLLM
        ("simple-shuffle", "weighted"),  # LiteLLM
        ("usage-based-routing", "least_busy"),  # LiteLLM
        ("usage-based-routing-v2", "least_busy"),
        ("Round_Robin", "round_robin"),
        (" priority ", "priority"),
    ],
)
def test_other_gateways_strategy_names_load_as_corrals(given: str, canonical: str) -> None:
    config = load([{"name": "m", "targets": ["gpu/a", "vllm/a"], "strategy": given}], {"strategy": given})
    assert config.models[0].strategy == canonical
    assert config.router.strategy == canonical


def test_an_unknown_strategy_lists_every_accepted_name() -> None:
    message = error_of(router={"strategy": "cost-based-routing"})
    assert "router.strategy" in message and "'cost-based-routing'" in message
    for name in ("warm", "round_robin", "least_busy", "round-robin", "least-connections", "simple-shuffle"):
        assert name in message
