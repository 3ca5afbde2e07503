"""order(): priority tiers, a strategy within each tier, busy last, ejected out unless panic."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from corral.config.schema import STRATEGIES as CONFIG_STRATEGIES
from corral.config.schema import RouterConfig
from corral.core.call import Target
from corral.routing.state import DeploymentState
from corral.routing.strategies import STRATEGIES, Context, order

NOW = 1000.0
CFG = RouterConfig(eject_after=1, eject_base=10.0)


def ctx(counter: int = 0, num_ctx: int | None = None, seed: int = 7) -> Context:
    return Context(counter, num_ctx, random.Random(seed))


def states(*names: str, kind: str = "ollama", **kw: object) -> dict[str, DeploymentState]:
    return {n: DeploymentState(n, kind, **kw) for n in names}  # type: ignore[arg-type]


def providers(targets: list[Target]) -> list[str]:
    return [t.provider for t in targets]


def eject(state: DeploymentState, now: float = NOW) -> None:
    state.record_failure(now, "HTTP 500", CFG)


def test_every_configurable_strategy_is_implemented() -> None:
    assert set(CONFIG_STRATEGIES) == set(STRATEGIES)


# tiers, busy, ejected, panic ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_lower_priority_number_comes_first_for_every_strategy(strategy: str) -> None:
    st = states("a", "b", "c", "d")
    targets = [Target("a", "m", 2), Target("b", "m", 0), Target("c", "m", 1), Target("d", "m", 0)]
    for counter in range(4):
        ranked = order(targets, st, strategy, ctx(counter, seed=counter), NOW)
        assert [t.priority for t in ranked] == [0, 0, 1, 2]
        assert set(providers(ranked[:2])) == {"b", "d"}


def test_busy_deployments_go_last_within_their_tier_only() -> None:
    st = states("a", "b", "c")
    st["a"].record_busy(NOW, 5.0)
    targets = [Target("a", "m", 0), Target("b", "m", 0), Target("c", "m", 1)]
    assert providers(order(targets, st, "round_robin", ctx(), NOW)) == ["b", "a", "c"]
    assert providers(order(targets, st, "round_robin", ctx(), NOW + 6)) == ["a", "b", "c"]


def test_ejected_and_misconfigured_are_left_out_while_others_remain() -> None:
    st = states("a", "b", "c", "d")
    eject(st["a"])
    st["b"].record_misconfigured("HTTP 401")
    st["d"].enabled = False
    targets = [Target(n, "m") for n in "abcd"]
    assert providers(order(targets, st, "round_robin", ctx(), NOW)) == ["c"]
    # an expired ejection is a trial candidate; a running trial is not
    assert providers(order(targets, st, "round_robin", ctx(), NOW + 11)) == ["a", "c"]
    st["a"].start(NOW + 11)
    assert providers(order(targets, st, "round_robin", ctx(), NOW + 11)) == ["c"]


def test_panic_orders_ejected_by_soonest_end_and_never_uses_disabled() -> None:
    st = states("a", "b", "c", "d")
    eject(st["a"], NOW + 3)  # until NOW + 13
    eject(st["b"], NOW)  # until NOW + 10
    eject(st["c"], NOW + 1)  # until NOW + 11
    st["d"].enabled = False
    targets = [Target(n, "m") for n in "abcd"]
    assert providers(order(targets, st, "warm", ctx(), NOW + 2)) == ["b", "c", "a"]


def test_panic_includes_misconfigured_but_not_disabled() -> None:
    st = states("a", "b")
    st["a"].record_misconfigured("HTTP 403")
    st["b"].enabled = False
    assert providers(order([Target("a", "m"), Target("b", "m")], st, "warm", ctx(), NOW)) == ["a"]


def test_nothing_enabled_gives_an_empty_order() -> None:
    st = states("a", enabled=False)
    assert order([Target("a", "m")], st, "warm", ctx(), NOW) == []
    assert order([], st, "warm", ctx(), NOW) == []


# round robin -------------------------------------------------------------------------------


def test_round_robin_rotates_with_the_counter() -> None:
    st = states("a", "b", "c")
    targets = [Target(n, "m") for n in "abc"]
    seen = [providers(order(targets, st, "round_robin", ctx(i), NOW)) for i in range(4)]
    assert seen == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_round_robin_spreads_first_picks_evenly() -> None:
    st = states("a", "b", "c")
    targets = [Target(n, "m") for n in "abc"]
    firsts = Counter(order(targets, st, "round_robin", ctx(i), NOW)[0].provider for i in range(300))
    assert firsts == {"a": 100, "b": 100, "c": 100}


# weighted / priority -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["weighted", "priority"])
def test_weighted_first_pick_is_proportional_to_weight(strategy: str) -> None:
    st = states("a", "b", "c", "d")
    weights = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    targets = [Target(n, "m", weight=w) for n, w in weights.items()]
    rng = random.Random(1234)
    draws = 20_000
    firsts = Counter(
        order(targets, st, strategy, Context(0, None, rng), NOW)[0].provider for _ in range(draws)
    )
    for name, weight in weights.items():
        assert firsts[name] / draws == pytest.approx(weight / 10.0, abs=0.015), name


def test_weighted_is_reproducible_with_a_seed_and_keeps_every_target() -> None:
    st = states("a", "b", "c")
    targets = [Target(n, "m", weight=w) for n, w in zip("abc", (1.0, 5.0, 2.0), strict=True)]
    one = [providers(order(targets, st, "weighted", ctx(seed=99), NOW)) for _ in range(3)]
    assert one[0] == one[1] == one[2]
    assert sorted(one[0]) == ["a", "b", "c"]


def test_zero_weight_is_never_first() -> None:
    st = states("a", "b")
    targets = [Target("a", "m", weight=0.0), Target("b", "m", weight=0.01)]
    rng = random.Random(5)
    for _ in range(500):
        assert providers(order(targets, st, "weighted", Context(0, None, rng), NOW)) == ["b", "a"]


# least busy, latency -----------------------------------------------------------------------


def test_least_busy_orders_by_in_flight_over_capacity() -> None:
    st = {
        "a": DeploymentState("a", "ollama", max_parallel=4, in_flight=3),  # 0.75
        "b": DeploymentState("b", "ollama", max_parallel=2, in_flight=1),  # 0.5
        "c": DeploymentState("c", "openai", in_flight=2),  # 2 / 8
    }
    targets = [Target(n, "m") for n in "abc"]
    for counter in range(3):
        assert providers(order(targets, st, "least_busy", ctx(counter), NOW)) == ["c", "b", "a"]


def test_least_busy_rotates_among_equals() -> None:
    st = states("a", "b", "c", max_parallel=4)
    targets = [Target(n, "m") for n in "abc"]
    firsts = {order(targets, st, "least_busy", ctx(i), NOW)[0].provider for i in range(3)}
    assert firsts == {"a", "b", "c"}


def test_latency_puts_unmeasured_first_then_lowest_ewma() -> None:
    st = states("fast", "slow", "new", "mid")
    st["fast"].record_success(50.0)
    st["slow"].record_success(900.0)
    st["mid"].record_success(300.0)
    targets = [Target(n, "m") for n in ("slow", "fast", "new", "mid")]
    for counter in range(4):
        assert providers(order(targets, st, "latency", ctx(counter), NOW)) == ["new", "fast", "mid", "slow"]


# warm --------------------------------------------------------------------------------------


def test_warm_prefers_the_loaded_model_with_the_matching_context() -> None:
    st = {
        "cold": DeploymentState("cold", "ollama", max_parallel=4),
        "other_ctx": DeploymentState("other_ctx", "ollama", max_parallel=4, loaded={"qwen3:8b": 4096}),
        "hot": DeploymentState("hot", "ollama", max_parallel=4, in_flight=3, loaded={"qwen3:8b": 8192}),
    }
    targets = [Target(n, "qwen3:8b") for n in ("cold", "other_ctx", "hot")]
    ranked = providers(order(targets, st, "warm", ctx(num_ctx=8192), NOW))
    assert ranked[0] == "hot"  # warm beats idle-but-cold
    assert set(ranked[1:]) == {"cold", "other_ctx"}
    # without a requested context both loaded ones are warm; the less loaded leads
    assert providers(order(targets, st, "warm", ctx(), NOW))[:2] == ["other_ctx", "hot"]


def test_warm_matches_bare_names_to_latest() -> None:
    st = {
        "a": DeploymentState("a", "ollama", max_parallel=4),
        "b": DeploymentState("b", "ollama", max_parallel=4, in_flight=2, loaded={"llama3.2:latest": None}),
    }
    targets = [Target("a", "llama3.2"), Target("b", "llama3.2")]
    assert providers(order(targets, st, "warm", ctx(), NOW)) == ["b", "a"]


def test_warm_then_free_capacity_then_latency() -> None:
    loaded = {"m:latest": None}
    st = {
        "full": DeploymentState("full", "ollama", max_parallel=2, in_flight=1, loaded=dict(loaded)),
        "slow": DeploymentState("slow", "ollama", max_parallel=4, loaded=dict(loaded)),
        "quick": DeploymentState("quick", "ollama", max_parallel=4, loaded=dict(loaded)),
        "cold": DeploymentState("cold", "ollama", max_parallel=4),
    }
    st["slow"].record_success(800.0)
    st["quick"].record_success(40.0)
    targets = [Target(n, "m") for n in ("cold", "full", "slow", "quick")]
    for counter in range(4):
        assert providers(order(targets, st, "warm", ctx(counter), NOW)) == ["quick", "slow", "full", "cold"]


def test_warm_counts_non_ollama_as_warm() -> None:
    st = {
        "cold": DeploymentState("cold", "ollama", max_parallel=4),
        "vllm": DeploymentState("vllm", "openai", in_flight=4),  # load 0.5
    }
    targets = [Target("cold", "m"), Target("vllm", "m")]
    assert providers(order(targets, st, "warm", ctx(), NOW)) == ["vllm", "cold"]
