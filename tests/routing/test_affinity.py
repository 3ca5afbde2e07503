"""Session affinity's parts: the conversation key, the pins (bounded, idle TTL), hit/miss/repin/
spill, and when a short prompt spills from its full pinned deployment (routing/pinning.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from corral.config.schema import AliasTarget, ModelAlias, RouterConfig
from corral.conversation.call import Call, Endpoint, Route, Surface, Target
from corral.routing.affinity import HIT, MISS, REPIN, SPILL, Affinity, Pins, key_of, session_of
from corral.routing.fleet import Fleet
from corral.routing.pinning import short, spill_to
from corral.routing.state import DeploymentState


def _call(body: Mapping[str, Any], *, surface: Surface = Surface.OPENAI, session: str | None = None) -> Call:
    raw = orjson.dumps(body)
    call = Call(Endpoint.CHAT, dict(body), raw, "m", False, "req-1", surface)
    call.session = session
    return call


def _turns(n: int) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "first question"}]
    for i in range(n):
        msgs += [{"role": "assistant", "content": f"answer {i}"}, {"role": "user", "content": f"next {i}"}]
    return msgs


def test_session_headers_in_order_of_trust() -> None:
    assert session_of({"x-corral-session": "a", "session-id": "b"}) == "a"
    assert session_of({"x-claude-code-session-id": "cc", "x-openwebui-chat-id": "w"}) == "cc"
    assert session_of({"session-id": "codex"}) == "codex"
    assert session_of({"x-openwebui-chat-id": "chat-1"}) == "chat-1"
    assert session_of({"authorization": "Bearer x"}) is None
    assert session_of({"x-corral-session": "x" * 1000}) == "x" * 256


def test_prefix_key_is_stable_across_turns_and_differs_between_conversations() -> None:
    first = key_of(_call({"messages": _turns(0)}), "pool")
    later = key_of(_call({"messages": _turns(5)}), "pool")
    other = key_of(_call({"messages": [{"role": "user", "content": "another chat"}]}), "pool")
    assert first is not None and first == later
    assert other is not None and other != first
    assert key_of(_call({"messages": _turns(0)}), "other-pool") != first  # one conversation, two models


def test_prefix_counts_the_tools_and_the_messages_system() -> None:
    tools = [{"type": "function", "function": {"name": "read_file"}}]
    plain = key_of(_call({"messages": _turns(0)}), "p")
    with_tools = key_of(_call({"messages": _turns(0), "tools": tools}), "p")
    assert plain != with_tools
    body = {
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    messages = key_of(_call(body, surface=Surface.MESSAGES), "p")
    other_system = key_of(_call({**body, "system": "Be long."}, surface=Surface.MESSAGES), "p")
    assert messages is not None and messages != other_system
    responses = {"instructions": "Be brief.", "input": [{"role": "user", "content": "hi"}]}
    assert key_of(_call(responses, surface=Surface.RESPONSES), "p") is not None


def test_header_wins_over_prefix_and_embeddings_have_no_key() -> None:
    a = key_of(_call({"messages": _turns(0)}, session="s1"), "p")
    b = key_of(_call({"messages": [{"role": "user", "content": "different"}]}, session="s1"), "p")
    assert a == b
    emb = Call(Endpoint.EMBEDDING, {"input": "x"}, b"{}", "m", False, "r")
    emb.session = "s1"
    assert key_of(emb, "p") is None
    assert key_of(_call({"messages": [{"role": "system", "content": "only a system prompt"}]}), "p") is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pins_are_bounded_and_forgotten_when_idle() -> None:
    clock = Clock()
    pins = Pins(2, 60.0, clock=clock)
    pins.put("a", "gpu1")
    pins.put("b", "gpu2")
    assert pins.get("a") == "gpu1"  # a is now the most recent
    pins.put("c", "gpu3")
    assert len(pins) == 2 and pins.get("b") is None and pins.get("a") == "gpu1"
    clock.now += 61
    assert pins.get("a") is None
    pins.put("d", "gpu1")
    pins.put("e", "gpu2")
    assert pins.drop("gpu1") == 1 and pins.get("d") is None and pins.get("e") == "gpu2"


def test_hit_miss_repin_and_pinned_only_within_what_is_allowed() -> None:
    affinity = Affinity(Pins(10, 60.0), wait=1.0)
    a, b = Target("gpu1", "m"), Target("gpu2", "m")
    assert affinity.pinned("k", [a, b]) is None
    assert affinity.record("k", "gpu1") == MISS
    assert affinity.pinned("k", [b, a]) == a
    assert affinity.pinned("k", [b]) is None  # ejected or filtered out: not ranked, not pinned
    assert affinity.record("k", "gpu1") == HIT
    assert affinity.record("k", "gpu2") == REPIN
    assert affinity.pinned("k", [a, b]) == b
    stats = affinity.stats
    assert (stats.hits, stats.misses, stats.repins) == (1, 1, 1)


def test_affinity_applies_to_ollama_pools_unless_the_alias_says() -> None:
    types = {"gpu1": "ollama", "gpu2": "ollama", "vllm": "openai"}
    pool = Route("chat", (Target("gpu1", "m"), Target("gpu2", "m")), is_alias=True)
    single = Route("gpu1/m", (Target("gpu1", "m"),))
    openai_pool = Route("v", (Target("vllm", "a"), Target("vllm", "b")), is_alias=True)
    off = ModelAlias("chat", (AliasTarget("gpu1/m"), AliasTarget("gpu2/m")), affinity=False)
    on = ModelAlias("v", (AliasTarget("vllm/a"),), affinity=True)
    affinity = Affinity(Pins(10, 60.0), 1.0, {})
    assert affinity.applies(pool, types) and not affinity.applies(single, types)
    assert not affinity.applies(openai_pool, types)
    configured = Affinity(Pins(10, 60.0), 1.0, {"chat": off, "v": on})
    assert not configured.applies(pool, types) and configured.applies(openai_pool, types)
    assert not Affinity(Pins(10, 60.0), 1.0, {}, enabled=False).applies(pool, types)


def test_a_spill_moves_the_pin_and_is_counted_apart() -> None:
    affinity = Affinity(Pins(10, 60.0), wait=1.0, spill_below=2048)
    affinity.record("k", "gpu1")
    assert affinity.record("k", "gpu2", spilled=True) == SPILL
    assert affinity.pinned("k", [Target("gpu1", "m"), Target("gpu2", "m")]) == Target("gpu2", "m")
    # spilled to where the pin already is (another turn moved it first): a hit on the pin as it is
    assert affinity.record("k", "gpu2", spilled=True) == HIT
    stats = affinity.stats
    assert (stats.hits, stats.misses, stats.repins, stats.spills) == (1, 1, 0, 1)


def spill(
    fleet: Fleet, call: Call, pinned: Target, ranked: list[Target], num_ctx: int | None, below: int
) -> list[Target]:
    """``spill_to`` as a list (it answers an empty tuple when there is nowhere to spill to)."""
    return list(spill_to(fleet, call, pinned, ranked, num_ctx, below))


def _fleet(**loaded: dict[str, int | None]) -> Fleet:
    """Deployments of one slot each, ``loaded`` as /api/ps would say (missing: the model is cold)."""
    states = [DeploymentState(n, "ollama", max_parallel=1, loaded=dict(m)) for n, m in loaded.items()]
    return Fleet(states, RouterConfig())


def test_spill_to_only_when_the_prompt_is_short_and_the_model_held_as_asked() -> None:
    fleet = _fleet(gpu1={"m:latest": None}, gpu2={"m:latest": None}, gpu3={}, gpu4={"m:latest": 4096})
    a, b, cold, other_ctx = (Target(n, "m") for n in ("gpu1", "gpu2", "gpu3", "gpu4"))
    ranked = [a, cold, other_ctx, b]
    hi = _call({"messages": [{"role": "user", "content": "hi"}]})
    fleet.states["gpu1"].start(0.0)  # the engine asks only once the pinned one refused a slot
    assert spill(fleet, hi, a, ranked, None, 2048) == [other_ctx, b]  # warm and free: not the cold
    # a num_ctx is matched only where the instance reported that context: gpu2's is not known
    assert spill(fleet, hi, a, ranked, 4096, 2048) == [other_ctx]
    assert spill(fleet, hi, a, ranked, 8192, 2048) == []  # loaded with another num_ctx: a reload
    assert spill(fleet, hi, a, ranked, None, 0) == []  # spilling off
    long = _call({"messages": [{"role": "user", "content": "word " * 2000}]})  # 10 kB, ~2500 tokens
    assert not short(long, 2048) and short(long, 4096)
    assert spill(fleet, long, a, ranked, None, 2048) == []
    picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9000}}
    shown = _call({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, picture]}]})
    assert not short(shown, 4096)  # the image is not in the estimate, and the pin holds it encoded
    fleet.states["gpu2"].start(0.0)
    fleet.states["gpu4"].start(0.0)
    assert spill(fleet, hi, a, ranked, None, 2048) == []  # no warm one is free either


def test_spill_to_stays_in_the_pins_priority_tier_or_a_better_one() -> None:
    fleet = _fleet(gpu1={"m:latest": None}, gpu2={"m:latest": None}, cloud={"m:latest": None})
    fleet.states["gpu1"].start(0.0)
    hi = _call({"messages": [{"role": "user", "content": "hi"}]})
    pinned, local, overflow = Target("gpu1", "m"), Target("gpu2", "m"), Target("cloud", "m", priority=1)
    assert spill(fleet, hi, pinned, [pinned, overflow], None, 2048) == []  # the wait first, as before
    assert spill(fleet, hi, pinned, [pinned, local, overflow], None, 2048) == [local]
    fleet.states["cloud"].start(0.0)  # a pin in the overflow tier may come back to a better one
    assert spill(fleet, hi, overflow, [local, overflow], None, 2048) == [local]
