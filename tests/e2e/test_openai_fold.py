"""Non-streamed calls to OpenAI-type upstreams are streamed from them and folded (#16): a server
that accepts and then sends no first token is failed over at the first-token deadline, not at
the provider's full timeout; the folded answer is the one the server gives unstreamed; an answer
cut short is never a 200. Through `corral serve`'s app on real sockets, the official openai and
anthropic clients, and OpenAI-compatible emulators (vLLM-like) on loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.emulators.common import Fault
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

USER = [{"role": "user", "content": "hello there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    },
]


class Pair:
    """Two vLLM-like servers in one pool, a before b, with a fixed 30 s first-token timeout."""

    def __init__(self) -> None:
        self.a, self.b = OpenAIEmulator(["qwen"]), OpenAIEmulator(["qwen"])
        self.servers = [ServerThread(e.app, shutdown_timeout=0.2) for e in (self.a, self.b)]

    def __enter__(self) -> Pair:
        for server in self.servers:
            server.start()
        sa, sb = self.servers
        config = {
            "providers": [
                {"name": "a", "type": "openai", "base_url": sa.url + "/v1", "priority": 0},
                {"name": "b", "type": "openai", "base_url": sb.url + "/v1", "priority": 1},
            ],
            "models": [{"name": "m", "targets": ["a/qwen", "b/qwen"]}],
            "router": {"health_interval": "60s", "failover_timeout": "30s", "first_token": {"max": "800ms"}},
        }
        self.gw = GatewayServer(make_config(config)).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gw.stop()
        for server in self.servers:
            server.stop()


@pytest.fixture
def pair() -> Iterator[Pair]:
    with Pair() as p:
        yield p


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=gw.key, max_retries=0, timeout=30)


def test_a_server_hanging_before_its_first_token_is_failed_over_at_the_deadline(pair: Pair) -> None:
    for _ in range(6):  # a has a history of fast first tokens, learnt from whole answers alone
        assert ask(pair.gw, "m")[1] == "a"
    # accepts, sends its headers, then nothing: unstreamed, only the full 600 s timeout would end it
    pair.a.fault = Fault("stall_midstream", after_chunks=0, seconds=30)
    started = time.monotonic()
    raw = oai(pair.gw).chat.completions.with_raw_response.create(model="m", messages=USER)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    answer = raw.parse()
    assert answer.choices[0].message.content == "Echo: hello there"
    assert raw.headers["x-corral-provider"] == "b" and raw.headers["x-corral-attempts"] == "2"
    assert elapsed < 2.5, f"failed over after {elapsed:.2f} s"
    sent = pair.a.requests_to("/chat/completions")[-1]
    assert sent.json["stream"] is True and sent.json["stream_options"] == {"include_usage": True}


def test_the_anthropic_surface_is_guarded_the_same_way(pair: Pair) -> None:
    for _ in range(6):
        assert ask(pair.gw, "m")[1] == "a"
    pair.a.fault = Fault("stall_midstream", after_chunks=0, seconds=30)
    client = anthropic.Anthropic(base_url=pair.gw.url, api_key=pair.gw.key, max_retries=0, timeout=30)
    started = time.monotonic()
    raw = client.messages.with_raw_response.create(model="m", max_tokens=64, messages=USER)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    message = raw.parse()
    assert [b.text for b in message.content if b.type == "text"] == ["Echo: hello there"]
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 3
    assert raw.headers["x-corral-provider"] == "b"
    assert elapsed < 2.5, f"failed over after {elapsed:.2f} s"


def ask(gw: GatewayServer, model: str) -> tuple[str, str]:
    """(content, provider) of one unstreamed chat completion through the openai client."""
    raw = oai(gw).chat.completions.with_raw_response.create(model=model, messages=USER)  # type: ignore[arg-type]
    return str(raw.parse().choices[0].message.content), raw.headers["x-corral-provider"]


def _plain(obj: Any) -> Any:
    return obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else obj


@pytest.mark.parametrize(
    "ask_for", ["", 'call get_weather {"city": "Paris"}', "call get_weather and get_time"],
    ids=["text", "one-tool-call", "two-tool-calls"],
)  # fmt: skip
def test_the_folded_answer_is_the_one_the_server_gives_unstreamed(pair: Pair, ask_for: str) -> None:
    tools = bool(ask_for)
    extra: dict[str, Any] = {"tools": TOOLS} if tools else {}
    prompt = [{"role": "user", "content": ask_for}] if tools else USER
    via = oai(pair.gw).chat.completions.create(model="m", messages=prompt, **extra)  # type: ignore[arg-type]
    direct_url = pair.servers[0].url + "/v1"
    direct = openai.OpenAI(base_url=direct_url, api_key="x", max_retries=0).chat.completions.create(
        model="qwen",
        messages=prompt,
        **extra,  # type: ignore[arg-type]
    )
    got, want = via.choices[0], direct.choices[0]
    assert got.finish_reason == want.finish_reason == ("tool_calls" if tools else "stop")
    assert got.message.content == want.message.content
    assert got.message.role == "assistant"
    calls = [(c.function.name, c.function.arguments, c.type) for c in got.message.tool_calls or []]
    assert calls == [(c.function.name, c.function.arguments, c.type) for c in want.message.tool_calls or []]
    if tools:
        assert len(calls) == ask_for.count("get_") and all(c.id for c in got.message.tool_calls or [])
        assert calls[0][0] == "get_weather" and json.loads(calls[0][1]) == (
            {"city": "Paris"} if "Paris" in ask_for else {"city": "test"}
        )
    assert via.object == "chat.completion" and via.model == "m"
    assert _plain(via.usage) == _plain(direct.usage)


def test_legacy_completions_are_folded_too(pair: Pair) -> None:
    via = oai(pair.gw).completions.create(model="m", prompt="Say something")
    direct = openai.OpenAI(base_url=pair.servers[0].url + "/v1", api_key="x", max_retries=0)
    want = direct.completions.create(model="qwen", prompt="Say something")
    assert via.object == "text_completion" and via.choices[0].text == want.choices[0].text
    assert via.choices[0].finish_reason == want.choices[0].finish_reason
    assert _plain(via.usage) == _plain(want.usage)
    assert pair.a.requests_to("/completions")[0].json["stream"] is True  # the gateway's, before ours


@pytest.mark.parametrize("kind", ["drop_midstream", "midstream_error"])
def test_an_answer_cut_short_is_never_a_200(pair: Pair, kind: str) -> None:
    # cut after two chunks on both servers: unstreamed, the client would have had a partial answer
    for emu in (pair.a, pair.b):
        emu.fault = Fault(kind, after_chunks=2)  # type: ignore[arg-type]
    body = {"model": "m", "messages": USER}
    resp = httpx.post(pair.gw.v1 + "/chat/completions", json=body, headers=pair.gw.headers(), timeout=30)
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "all_attempts_failed"
    assert "Echo" not in resp.text and "'a'" in resp.text and "'b'" in resp.text
    # both were tried: a's cut answer was not handed on, b was asked next
    assert len(pair.a.requests_to("/chat/completions")) == 1
    assert len(pair.b.requests_to("/chat/completions")) == 1


def test_the_last_deployment_to_try_is_asked_for_a_whole_answer(pair: Pair) -> None:
    # b answers after a was given up on: there is nowhere to fail over to, so no fold (cheaper)
    pair.a.fault = Fault("status", status=503, message="busy", times=1)
    assert ask(pair.gw, "m") == ("Echo: hello there", "b")
    assert pair.a.requests_to("/chat/completions")[0].json["stream"] is True
    assert "stream" not in pair.b.requests_to("/chat/completions")[0].json


def test_a_server_that_refuses_to_stream_a_call_is_asked_for_it_whole(pair: Pair) -> None:
    # OpenAI refuses to stream some models for some organisations (400): the call still works
    pair.a.fault = Fault(
        "status", status=400, message="Your organization must be verified to stream", times=1
    )
    assert ask(pair.gw, "m") == ("Echo: hello there", "a")
    first, again = pair.a.requests_to("/chat/completions")
    assert first.json["stream"] is True and "stream" not in again.json
    assert ask(pair.gw, "m") == ("Echo: hello there", "a")
    assert "stream" not in pair.a.requests_to("/chat/completions")[-1].json  # remembered for the model


def test_a_request_refused_either_way_is_the_clients_error_and_not_remembered(pair: Pair) -> None:
    pair.a.fault = Fault("status", status=400, message="temperature is out of range", times=2)
    body = {"model": "m", "messages": USER}
    resp = httpx.post(pair.gw.v1 + "/chat/completions", json=body, headers=pair.gw.headers(), timeout=30)
    assert resp.status_code == 400 and "temperature" in resp.text
    assert ask(pair.gw, "m") == ("Echo: hello there", "a")
    assert pair.a.requests_to("/chat/completions")[-1].json["stream"] is True  # still folded


def test_a_cut_on_the_first_server_is_answered_by_the_next(pair: Pair) -> None:
    pair.a.fault = Fault("drop_midstream", after_chunks=2)
    raw = oai(pair.gw).chat.completions.with_raw_response.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "Echo: hello there"
    assert raw.headers["x-corral-provider"] == "b"
