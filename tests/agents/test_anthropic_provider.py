"""The ``anthropic`` provider type, over the Anthropic emulator: reachable from every chat surface.

``/v1/messages`` is passed through (only the model changes); OpenAI chat completions, Ollama's
``/api/chat`` and ``/v1/responses`` are translated both ways. Skipped, saying why, where the type
is not registered yet.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.emulators.anthropic import AnthropicEmulator
from tests.emulators.common import Fault
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


def _registered() -> bool:
    try:
        registry = importlib.import_module("corral.config.provider_types")
    except ImportError:
        return False
    return "anthropic" in registry.CONFIG_TYPES


if not _registered():
    pytest.skip(
        "the anthropic provider type is not in config/provider_types.REGISTRY yet", allow_module_level=True
    )

KEY = "sk-ant-upstream-key"
READ_O: Any = {
    "type": "function",
    "function": {
        "name": "read_file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}


@dataclass
class Fleet:
    emu: AnthropicEmulator
    gateway: GatewayServer


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    emu = AnthropicEmulator(["claude-haiku-4-5"], api_key=KEY)
    with ServerThread(emu.app) as up:
        config = make_config(
            f"""
providers:
  - name: claude
    type: anthropic
    base_url: {up.url}
    api_key: os.environ/ANTHROPIC_KEY
models:
  - name: haiku
    target: claude/claude-haiku-4-5
""",
            env={"ANTHROPIC_KEY": KEY},
        )
        with GatewayServer(config) as gw:
            yield Fleet(emu, gw)


@pytest.fixture(autouse=True)
def _reset(fleet: Fleet) -> Iterator[None]:
    yield
    fleet.emu.fault = None


def test_discovery_lists_the_upstreams_models(fleet: Fleet) -> None:
    ids = [m.id for m in openai.OpenAI(base_url=fleet.gateway.v1, api_key=fleet.gateway.key).models.list()]
    assert "haiku" in ids and "claude/claude-haiku-4-5" in ids


def test_messages_pass_through_with_the_routed_model(fleet: Fleet) -> None:
    client = anthropic.Anthropic(base_url=fleet.gateway.url, api_key=fleet.gateway.key, max_retries=0)
    reply = client.messages.create(
        model="haiku",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"context_management": {"edits": []}},
    )
    assert reply.content[0].text == "Echo: hi"  # type: ignore[union-attr]
    sent = fleet.emu.requests_to("/v1/messages")[-1]
    assert sent.json["model"] == "claude-haiku-4-5" and sent.json["context_management"] == {"edits": []}
    assert (
        sent.headers["authorization"] == f"Bearer {KEY}" and sent.headers["anthropic-version"] == "2023-06-01"
    )
    with client.messages.stream(
        model="haiku", max_tokens=64, messages=[{"role": "user", "content": "a b"}]
    ) as s:
        assert "".join(s.text_stream) == "Echo: a b"


def test_openai_chat_is_translated_both_ways(fleet: Fleet) -> None:
    client = openai.OpenAI(base_url=fleet.gateway.v1, api_key=fleet.gateway.key, max_retries=0)
    reply = client.chat.completions.create(
        model="haiku", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == "Echo: hello" and reply.choices[0].finish_reason == "stop"
    sent = fleet.emu.requests_to("/v1/messages")[-1].json
    assert sent["system"] == "s" and sent["max_tokens"] == 4096
    ask = [{"role": "user", "content": 'call read_file {"path": "a"}'}]
    called = client.chat.completions.create(
        model="haiku", messages=ask, tools=[READ_O], tool_choice="required"
    )  # type: ignore[arg-type]
    call = (called.choices[0].message.tool_calls or [])[0]
    assert called.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {
        "path": "a"
    }  # type: ignore[union-attr]
    assert fleet.emu.requests_to("/v1/messages")[-1].json["tool_choice"] == {"type": "any"}
    history = [
        *ask,
        called.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "alpha"},
    ]
    chunks = list(
        client.chat.completions.create(
            model="haiku",
            messages=history,
            tools=[READ_O],
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Tool result: alpha"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_ollama_chat_and_responses_reach_it_too(fleet: Fleet) -> None:
    native = httpx.post(
        fleet.gateway.url + "/api/chat",
        headers=fleet.gateway.headers(),
        json={"model": "haiku", "messages": [{"role": "user", "content": "x y"}], "stream": False},
    )
    assert native.status_code == 200 and native.json()["message"]["content"] == "Echo: x y"
    client = openai.OpenAI(base_url=fleet.gateway.v1, api_key=fleet.gateway.key, max_retries=0)
    assert client.responses.create(model="haiku", input="z").output_text == "Echo: z"


def test_overloaded_upstream_is_an_error_not_a_hang(fleet: Fleet) -> None:
    fleet.emu.fault = Fault("busy", times=1)
    client = openai.OpenAI(base_url=fleet.gateway.v1, api_key=fleet.gateway.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="haiku", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code in (502, 503, 529)
