"""``ping`` events on a ``/v1/messages`` stream while the upstream is slow to start, as Anthropic
sends them: the emulators hold their first byte until the test releases it, and the pings must
arrive before anything else (timed by the gateway's event loop, every ``server.ping_interval``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest

from corral.errors import ConfigError
from tests.emulators.anthropic import AnthropicEmulator
from tests.emulators.common import Fault
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

PING = "event: ping"


@dataclass
class Fleet:
    vllm: OpenAIEmulator
    claude: AnthropicEmulator
    gateway: GatewayServer

    def hold(self) -> threading.Event:
        gate = threading.Event()
        self.vllm.hold = self.claude.hold = gate
        return gate


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    vllm = OpenAIEmulator(["qwen2.5-coder-32b"], responses=True)
    claude = AnthropicEmulator()
    with ServerThread(vllm.app) as v, ServerThread(claude.app) as a:
        config = make_config(f"""
server:
  ping_interval: 50ms
providers:
  - name: vllm
    type: openai
    base_url: {v.url}/v1
  - name: hosted
    type: anthropic
    base_url: {a.url}
models:
  - name: coder
    target: vllm/qwen2.5-coder-32b
  - name: claude
    target: hosted/claude-haiku-4-5
""")
        with GatewayServer(config) as gw:
            yield Fleet(vllm, claude, gw)


@pytest.fixture(autouse=True)
def _reset(fleet: Fleet) -> Iterator[None]:
    yield
    if fleet.vllm.hold is not None:
        fleet.vllm.hold.set()  # never leave an answer held
    fleet.vllm.hold = fleet.claude.hold = None
    fleet.vllm.fault = None


def _body(model: str, stream: bool = True) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 32,
        "stream": stream,
        "messages": [{"role": "user", "content": "a b"}],
    }


def _events(fleet: Fleet, body: dict[str, Any], gate: threading.Event | None, pings: int = 3) -> list[str]:
    """The stream's event names; ``gate`` is released once ``pings`` pings came."""
    names: list[str] = []
    with httpx.stream(
        "POST", fleet.gateway.url + "/v1/messages", json=body, headers=fleet.gateway.headers(), timeout=20
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if gate is not None and names.count("ping") == pings:
                    gate.set()
    return names


@pytest.mark.parametrize("model", ["coder", "claude"], ids=["translated", "passed-through"])
def test_pings_come_while_the_upstream_holds_its_first_byte(fleet: Fleet, model: str) -> None:
    gate = fleet.hold()
    names = _events(fleet, _body(model), gate)
    assert gate.is_set()  # released by the pings: they came while the upstream held everything back
    start = names.index("message_start")
    assert start >= 3 and set(names[:start]) == {"ping"}  # pings first, nothing else before content
    assert names[-1] == "message_stop" and "content_block_delta" in names


def test_no_pings_before_an_answer_that_starts_in_time(fleet: Fleet) -> None:
    config = make_config(f"""
server:
  ping_interval: 30s
providers:
  - name: vllm
    type: openai
    base_url: {fleet.gateway.config.providers[0].base_url}
models:
  - name: coder
    target: vllm/qwen2.5-coder-32b
""")
    with (
        GatewayServer(config) as gw,
        httpx.stream(
            "POST", gw.url + "/v1/messages", json=_body("coder"), headers=gw.headers(), timeout=20
        ) as r,
    ):
        assert r.headers["x-corral-model"] == "qwen2.5-coder-32b"  # answered in time: all headers
        names = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_the_sdk_reads_a_pinged_stream(fleet: Fleet) -> None:
    gate = fleet.hold()

    def headers_in(response: Any) -> None:
        gate.set()  # the head came with the first ping, before the upstream sent a byte

    http = anthropic.DefaultHttpxClient(event_hooks={"response": [headers_in]}, timeout=20)
    client = anthropic.Anthropic(
        base_url=fleet.gateway.url, api_key=fleet.gateway.key, max_retries=0, http_client=http
    )
    with client.messages.stream(
        model="coder", max_tokens=32, messages=[{"role": "user", "content": "a b"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert gate.is_set() and text == "Echo: a b" and final.stop_reason == "end_turn"


def test_a_failure_after_pings_is_an_in_band_error_event(fleet: Fleet) -> None:
    gate = fleet.hold()
    fleet.vllm.fault = Fault("status", status=500, message="boom")
    names = _events(fleet, _body("coder"), gate)
    assert set(names[:-1]) == {"ping"} and names[-1] == "error"


def test_a_whole_answer_gets_no_pings(fleet: Fleet) -> None:
    gate = fleet.hold()
    threading.Thread(target=gate.set, daemon=True).start()  # released at once; the answer is whole
    r = httpx.post(
        fleet.gateway.url + "/v1/messages",
        json=_body("coder", False),
        headers=fleet.gateway.headers(),
        timeout=20,
    )
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "Echo: a b"


@pytest.mark.parametrize("value", ["5ms", "5m"])
def test_the_interval_is_bounded(value: str) -> None:
    with pytest.raises(ConfigError, match="ping_interval: must be from 10ms to 60s"):
        make_config({"server": {"ping_interval": value}})


def test_a_client_that_leaves_while_pinged_frees_the_deployment(fleet: Fleet) -> None:
    fleet.hold()
    state = fleet.gateway.gateway.fleet.states["vllm"]
    with httpx.stream(
        "POST",
        fleet.gateway.url + "/v1/messages",
        json=_body("coder"),
        headers=fleet.gateway.headers(),
        timeout=20,
    ) as r:
        for line in r.iter_lines():
            if line == PING:
                assert state.in_flight == 1  # the call holds its slot while the upstream is held
                break  # and the client hangs up
    deadline = time.monotonic() + 10
    while state.in_flight and time.monotonic() < deadline:  # the engine's work is cancelled
        time.sleep(0.01)
    assert state.in_flight == 0
