"""Upstream connections are kept alive across requests, whichever way the answer was read."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

USER = [{"role": "user", "content": "keep this connection"}]


@pytest.fixture
def setup() -> Iterator[tuple[OllamaEmulator, GatewayServer]]:
    # Tokens 10 ms apart: the final line and the chunked body's end marker arrive in separate
    # writes, so corral has read the final line before the body is complete.
    emulator = OllamaEmulator(token_delay=0.01)
    with ServerThread(emulator.app) as upstream:
        config = make_config(
            f"""
providers:
  - name: local
    type: ollama
    base_url: {upstream.url}
router:
  health_interval: 3600
"""
        )
        with GatewayServer(config) as gw:
            yield emulator, gw


def test_one_connection_carries_sequential_streamed_folded_and_native_calls(
    setup: tuple[OllamaEmulator, GatewayServer],
) -> None:
    emulator, gw = setup
    client = openai.OpenAI(base_url=gw.v1, api_key=gw.key, max_retries=0, timeout=20)
    client.chat.completions.create(model="local/llama3.2", messages=USER)  # warm up the pool
    time.sleep(0.2)  # let start-up discovery and health checks finish
    before = len(emulator.requests_to("/api/chat"))
    for _ in range(3):
        answer = client.chat.completions.create(model="local/llama3.2", messages=USER)
        assert answer.choices[0].message.content == "Echo: keep this connection"
        stream = client.chat.completions.create(model="local/llama3.2", messages=USER, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        native = httpx.post(
            gw.url + "/api/chat",
            json={"model": "local/llama3.2", "messages": USER},
            headers=gw.headers(),
            timeout=20,
        )
        assert native.status_code == 200 and native.text.count("\n") > 1
    calls = emulator.requests_to("/api/chat")[before:]
    assert len(calls) == 9
    peers = {call.peer for call in calls}
    assert len(peers) == 1, f"expected one upstream connection for 9 sequential calls, saw {len(peers)}"
