"""Context fit through `corral serve`: a prompt longer than a pool's pinned ``num_ctx`` follows
its ``context_window_fallbacks``; with no chain it is refused with OpenAI's
``context_length_exceeded`` (and each surface's equivalent), without reaching an upstream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import ollama
import openai
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

LONG = "lorem ipsum dolor sit amet " * 1000  # about 6,750 tokens at 4 characters a token


@dataclass
class Setup:
    small: OllamaEmulator
    big: OllamaEmulator
    gateway: GatewayServer

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.v1, api_key=self.gateway.key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    small = OllamaEmulator([{"name": "qwen3:0.6b", "context_length": 40960}])
    big = OllamaEmulator([{"name": "qwen3:32b", "context_length": 131072}])
    with ServerThread(small.app) as s, ServerThread(big.app) as b:
        config = make_config(
            f"""
providers:
  - {{name: laptop, type: ollama, base_url: "{s.url}"}}
  - {{name: server, type: ollama, base_url: "{b.url}"}}
models:
  - name: quick
    target: laptop/qwen3:0.6b
    num_ctx: 2048
    context_window_fallbacks: [long]
  - {{name: long, target: server/qwen3:32b}}
  - {{name: quick-only, target: laptop/qwen3:0.6b, num_ctx: 2048}}
"""
        )
        with GatewayServer(config) as gw:
            yield Setup(small, big, gw)


def test_a_short_prompt_stays_and_a_long_one_follows_the_chain(setup: Setup) -> None:
    client = setup.openai()
    short = client.chat.completions.with_raw_response.create(
        model="quick", messages=[{"role": "user", "content": "hi"}]
    )
    assert short.headers["x-corral-provider"] == "laptop"
    chats = len(setup.small.requests_to("/api/chat"))
    long = client.chat.completions.with_raw_response.create(
        model="quick", messages=[{"role": "user", "content": LONG}]
    )
    assert long.headers["x-corral-provider"] == "server" and long.headers["x-corral-model"] == "qwen3:32b"
    assert len(setup.small.requests_to("/api/chat")) == chats  # the small one was never asked


def test_no_chain_is_context_length_exceeded_in_each_surface(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        setup.openai().chat.completions.create(
            model="quick-only", messages=[{"role": "user", "content": LONG}]
        )
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    assert "2048" in info.value.message
    client = ollama.Client(host=setup.gateway.url, headers=setup.gateway.headers(), timeout=20)
    with pytest.raises(ollama.ResponseError) as native:
        client.chat(model="quick-only", messages=[{"role": "user", "content": LONG}])
    assert native.value.status_code == 400 and "maximum context length is 2048" in native.value.error
    resp = httpx.post(
        setup.gateway.v1 + "/messages",
        headers=setup.gateway.headers(),
        json={"model": "quick-only", "max_tokens": 10, "messages": [{"role": "user", "content": LONG}]},
    )
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
