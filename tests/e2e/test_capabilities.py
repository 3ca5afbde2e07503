"""Capability-aware routing through `corral serve`: capabilities learned from the emulated
instances' /api/tags and /api/show decide where a request may go, and a request nothing in its
plan can serve is refused with a 400 naming the capability, in each surface's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionUserMessageParam

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
]


@dataclass
class Fleet:
    seeing: OllamaEmulator
    blind: OllamaEmulator
    gateway: GatewayServer

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.v1, api_key=self.gateway.key, max_retries=0, timeout=20)

    def ollama(self) -> ollama.Client:
        return ollama.Client(host=self.gateway.url, headers=self.gateway.headers(), timeout=20)


@pytest.fixture(scope="module")
def caps() -> Iterator[Fleet]:
    seeing = OllamaEmulator(
        [
            {"name": "gemma3", "capabilities": ["completion", "vision"]},
            {"name": "nomic-embed-text", "capabilities": ["embedding"]},
        ]
    )
    blind = OllamaEmulator(
        [
            {"name": "gemma3", "capabilities": ["completion"]},  # an older build without the projector
            {"name": "tinyllama", "capabilities": ["completion"]},
        ]
    )
    with ServerThread(seeing.app) as s, ServerThread(blind.app) as b:
        config = make_config(
            f"""
providers:
  - {{name: seeing, type: ollama, base_url: "{s.url}"}}
  - {{name: blind, type: ollama, base_url: "{b.url}"}}
models:
  - {{name: gemma, targets: [seeing/gemma3, blind/gemma3], strategy: round_robin, affinity: false}}
  - {{name: tiny, target: blind/tinyllama}}
"""
        )
        with GatewayServer(config) as gw:
            yield Fleet(seeing, blind, gw)


def test_a_vision_request_goes_only_where_the_model_sees(caps: Fleet) -> None:
    client = caps.openai()
    message: ChatCompletionUserMessageParam = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ],
    }
    served = set()
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(model="gemma", messages=[message])
        served.add(raw.headers["x-corral-provider"])
    assert served == {"seeing"}
    plain = {
        client.chat.completions.with_raw_response.create(
            model="gemma", messages=[{"role": "user", "content": "hi"}]
        ).headers["x-corral-provider"]
        for _ in range(4)
    }
    assert plain == {"seeing", "blind"}  # text: both, as the strategy spreads it
    reply = caps.ollama().chat(
        model="gemma", messages=[{"role": "user", "content": "what?", "images": [PNG]}]
    )
    assert reply["message"]["content"]


def test_tools_to_a_model_without_tools_is_a_400_naming_tools(caps: Fleet) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        caps.openai().chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "weather?"}],
            tools=TOOLS,  # type: ignore[arg-type]
        )
    assert info.value.status_code == 400 and info.value.code == "model_capability_missing"
    assert "tool calling" in info.value.message
    assert not [r for r in caps.blind.requests_to("/api/chat") if (r.json or {}).get("tools")]  # never sent
    with pytest.raises(ollama.ResponseError) as native:
        caps.ollama().chat(model="tiny", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS)
    assert native.value.status_code == 400 and "tool calling" in native.value.error
    resp = httpx.post(
        caps.gateway.v1 + "/messages",
        headers=caps.gateway.headers(),
        json={
            "model": "tiny",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        },
    )
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_a_reasoning_level_to_a_model_that_cannot_think_is_served_without_it(caps: Fleet) -> None:
    """Codex sends reasoning.effort on every request: a model without thinking answers anyway (it
    is not sent ``think``, which Ollama would refuse); Ollama's own ``think: true`` is refused."""
    before = len(caps.blind.requests_to("/api/chat"))
    resp = httpx.post(
        caps.gateway.v1 + "/responses",
        headers=caps.gateway.headers(),
        json={"model": "tiny", "input": "hello", "reasoning": {"effort": "medium"}},
        timeout=20,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed"
    sent = caps.blind.requests_to("/api/chat")[before:]
    assert sent and all("think" not in (r.json or {}) for r in sent)
    with pytest.raises(ollama.ResponseError) as native:
        caps.ollama().chat(model="tiny", messages=[{"role": "user", "content": "hi"}], think=True)
    assert native.value.status_code == 400 and "thinking" in native.value.error


def test_embeddings_to_a_chat_model_is_a_400_and_to_an_embedding_model_served(caps: Fleet) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        caps.ollama().embed(model="tiny", input="hello")
    assert info.value.status_code == 400 and "embeddings" in info.value.error
    with pytest.raises(openai.BadRequestError):
        caps.openai().embeddings.create(model="tiny", input="hello")
    assert caps.ollama().embed(model="nomic-embed-text", input="hello")["embeddings"]
