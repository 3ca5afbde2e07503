"""What a call needs, what models can do, and the plan filter (capabilities and context fit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from corral.config.schema import AliasTarget, ModelAlias
from corral.conversation.call import Call, Endpoint, Route, Surface, Target
from corral.providers.upstream import refused_capability
from corral.routing.capabilities import ModelFacts, needs_of
from corral.routing.context import prompt_tokens
from corral.routing.fit import CapabilityMissing, ContextLengthExceeded, Fit
from corral.routing.state import DeploymentState

ALL = frozenset({"completion", "tools", "vision", "embedding", "thinking"})


def _call(
    body: Mapping[str, Any], endpoint: Endpoint = Endpoint.CHAT, surface: Surface = Surface.OPENAI
) -> Call:
    return Call(endpoint, dict(body), orjson.dumps(body), "m", False, "r", surface)


USER = [{"role": "user", "content": "hi"}]


def test_needs_of_each_surface() -> None:
    assert needs_of(_call({"messages": USER}), ALL) == {"completion"}
    assert needs_of(_call({"input": "x"}, Endpoint.EMBEDDING), ALL) == {"embedding"}
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert "tools" in needs_of(_call({"messages": USER, "tools": tools}), ALL)
    assert "tools" not in needs_of(_call({"messages": USER, "tools": tools, "tool_choice": "none"}), ALL)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert "vision" in needs_of(_call({"messages": [{"role": "user", "content": [image]}]}), ALL)
    ollama_image = [{"role": "user", "content": "what is this", "images": ["AAAA"]}]
    assert "vision" in needs_of(_call({"messages": ollama_image}, surface=Surface.OLLAMA), ALL)
    assert "vision" not in needs_of(_call({"messages": [{"role": "user", "content": "an image of"}]}), ALL)
    assert "thinking" in needs_of(_call({"messages": USER, "think": True}, surface=Surface.OLLAMA), ALL)
    assert "thinking" in needs_of(_call({"messages": USER, "reasoning_effort": "high"}), ALL)
    assert "thinking" not in needs_of(_call({"messages": USER, "think": False}, surface=Surface.OLLAMA), ALL)
    messages = {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert "thinking" in needs_of(_call(messages, surface=Surface.MESSAGES), ALL)
    responses = {"input": "hi", "reasoning": {"effort": "medium"}}
    assert "thinking" in needs_of(_call(responses, surface=Surface.RESPONSES), ALL)
    assert needs_of(_call({"messages": USER, "think": True}), frozenset({"vision"})) == frozenset()


def test_facts_overrides_beat_what_was_learned_and_tags_are_optional() -> None:
    facts = ModelFacts({"gpu/llava": ["completion", "vision"]}, {"qwen3": 40960})
    facts.learn("gpu", "llava:latest", ["completion"], 4096)
    facts.learn("gpu", "qwen3:latest", ["completion", "tools", "thinking"], 8192)
    assert facts.of("gpu", "llava").capabilities == frozenset({"completion", "vision"})
    assert facts.of("gpu", "llava").context_length == 4096
    assert facts.of("gpu", "qwen3").context_length == 40960
    assert facts.of("gpu", "unknown").capabilities is None


def _fit(facts: ModelFacts, aliases: dict[str, ModelAlias] | None = None, **kw: object) -> Fit:
    states = {n: DeploymentState(n, "ollama") for n in ("a", "b", "c")}
    return Fit(facts, states, aliases or {}, {}, **kw)  # type: ignore[arg-type]


def _select(
    fit: Fit, call: Call, routes: list[Route], plans: dict[str, list[Route]] | None = None
) -> Sequence[Route]:
    return fit.select(call, routes, 1, lambda r: r.num_ctx, lambda name: (plans or {})[name])


def test_filter_leaves_out_known_missing_and_keeps_unknown() -> None:
    facts = ModelFacts()
    facts.learn("a", "m", ["completion", "tools"], None)
    facts.learn("b", "m", ["completion", "tools", "vision"], None)
    route = Route("pool", (Target("a", "m"), Target("b", "m"), Target("c", "m")), is_alias=True)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    call = _call({"messages": [{"role": "user", "content": [image]}]})
    chosen = _select(_fit(facts), call, [route])
    assert [t.provider for t in chosen[0].targets] == ["b", "c"]  # c: not known yet, kept
    plain = _call({"messages": USER})
    assert _select(_fit(facts), plain, [route])[0] is route  # nothing to filter: the same plan


def test_nothing_can_serve_it_is_a_400_naming_the_capability() -> None:
    facts = ModelFacts()
    facts.learn("a", "chat", ["completion", "tools"], None)
    route = Route("chat", (Target("a", "chat"),))
    with pytest.raises(CapabilityMissing) as info:
        _select(_fit(facts), _call({"input": "x"}, Endpoint.EMBEDDING), [route])
    assert info.value.status == 400 and "embeddings" in info.value.message and info.value.param == "embedding"


def test_an_alias_override_decides() -> None:
    facts = ModelFacts()
    facts.learn("a", "m", ["completion"], None)
    alias = ModelAlias("pool", (AliasTarget("a/m"),), capabilities=("completion", "tools"))
    route = Route("pool", (Target("a", "m"),), is_alias=True)
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert _select(_fit(facts, {"pool": alias}), _call({"messages": USER, "tools": tools}), [route])


def _long(tokens: int) -> Call:
    return _call({"messages": [{"role": "user", "content": "word " * (tokens * 4 // 5)}]})


def test_prompt_estimate_is_about_four_characters_a_token() -> None:
    assert prompt_tokens(_call({"messages": USER})) < 20
    estimate = prompt_tokens(_long(10_000))
    assert 9_000 < estimate < 11_000


def test_context_fit_skips_small_deployments_then_follows_the_chain() -> None:
    facts = ModelFacts()
    facts.learn("a", "small", None, 4096)
    facts.learn("b", "big", None, 131072)
    small = Route("small", (Target("a", "small"),), is_alias=True)
    big = Route("big", (Target("b", "big"),), is_alias=True)
    alias = ModelAlias("small", (AliasTarget("a/small"),), context_window_fallbacks=("big",))
    fit = _fit(facts, {"small": alias})
    assert _select(fit, _long(1000), [small]) == [small]
    assert _select(fit, _long(10_000), [small], {"big": [big]}) == [big]
    with pytest.raises(ContextLengthExceeded) as info:
        _select(_fit(facts), _long(10_000), [small])
    assert info.value.code == "context_length_exceeded" and "4096" in info.value.message
    pinned = Route("big", (Target("b", "big"),), num_ctx=2048, is_alias=True)
    with pytest.raises(ContextLengthExceeded):
        _select(_fit(facts), _long(5000), [pinned])


def test_reasoning_levels_are_a_preference_and_ollamas_think_is_required() -> None:
    facts = ModelFacts()
    facts.learn("a", "m", ["completion"], None)
    facts.learn("b", "m", ["completion", "thinking"], None)
    only_plain = Route("plain", (Target("a", "m"),))
    both = Route("pool", (Target("a", "m"), Target("b", "m")), is_alias=True)
    codex = _call({"input": "hi", "reasoning": {"effort": "medium"}}, surface=Surface.RESPONSES)
    chosen = _select(_fit(facts), codex, [both])
    assert [t.provider for t in chosen[0].targets] == ["b"] and codex.body["reasoning"]  # a thinker wins
    codex = _call({"input": "hi", "reasoning": {"effort": "medium"}}, surface=Surface.RESPONSES)
    assert _select(_fit(facts), codex, [only_plain]) == [only_plain]
    assert "reasoning" not in codex.body  # served without it: Ollama would refuse the ask
    openai_call = _call({"messages": USER, "reasoning_effort": "high"})
    assert _select(_fit(facts), openai_call, [only_plain]) == [only_plain]
    assert "reasoning_effort" not in openai_call.body
    claude = _call(
        {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 1024}}, surface=Surface.MESSAGES
    )
    assert _select(_fit(facts), claude, [only_plain]) == [only_plain] and "thinking" not in claude.body
    native = _call({"messages": USER, "think": True}, surface=Surface.OLLAMA)
    with pytest.raises(CapabilityMissing) as info:
        _select(_fit(facts), native, [only_plain])
    assert info.value.param == "thinking" and native.body["think"] is True
    tools = [{"type": "function", "function": {"name": "f"}}]
    both_missing = _call(
        {"input": "hi", "reasoning": {"effort": "low"}, "tools": tools}, surface=Surface.RESPONSES
    )
    with pytest.raises(CapabilityMissing):  # tools are not a preference
        _select(_fit(facts), both_missing, [only_plain])


def test_an_upstreams_capability_refusal_is_learned() -> None:
    assert refused_capability('"tinyllama" does not support thinking') == "thinking"
    assert refused_capability("registry.ollama.ai/library/x:latest does not support tools") == "tools"
    assert refused_capability('"all-minilm" does not support generate') == "completion"
    assert refused_capability("model not found") is None
    facts = ModelFacts()
    fit = _fit(facts)
    fit.learn_refusal(Target("a", "m"), "tools")
    assert facts.of("a", "m").capabilities == frozenset(
        {"completion", "vision", "embedding", "thinking", "insert", "image", "audio"}
    )  # nothing else was known: everything else is assumed, fail open
    route = Route("m", (Target("a", "m"),))
    tools = [{"type": "function", "function": {"name": "f"}}]
    with pytest.raises(CapabilityMissing) as info:
        _select(fit, _call({"messages": USER, "tools": tools}), [route])
    assert info.value.param == "tools"
    assert _select(fit, _call({"messages": USER}), [route]) == [route]
    facts.learn("b", "m", ["completion"], None)
    before = facts.version
    fit.learn_refusal(Target("b", "m"), "thinking")  # already known: no change
    assert facts.version == before
