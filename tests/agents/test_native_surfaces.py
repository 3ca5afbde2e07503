"""An OpenAI-compatible provider that declares the agents' APIs (``surfaces: [messages,
responses]``, as vLLM >= 0.11.1 and Ollama's ``/v1`` serve them) gets their calls passed
through: the client's body with only the model changed, the answer relayed as it came (but for
the model name the client asked for), the usage read for accounting. Through a real gateway with
the official ``anthropic`` and ``openai`` SDKs; the emulator records what it received.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from corral.accounting.tokens import usage_of
from corral.conversation.call import Call, Endpoint, Surface
from corral.errors import ConfigError
from tests.emulators.common import Fault
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

SERVED = "qwen2.5-coder-32b"
ALIAS = "coder"
_IDS = re.compile(rb'"(msg|resp|msg_item|rs|fc|call|toolu)_[A-Za-z0-9_]+"')


@dataclass
class Fleet:
    vllm: OpenAIEmulator
    upstream_url: str
    gateway: GatewayServer
    sent: list[bytes]  # the bodies the SDKs sent to the gateway, in order

    def _record(self, request: Any) -> None:
        self.sent.append(request.read())

    def anthropic(self) -> anthropic.Anthropic:
        http = anthropic.DefaultHttpxClient(event_hooks={"request": [self._record]}, timeout=20)
        return anthropic.Anthropic(
            base_url=self.gateway.url, api_key=self.gateway.key, max_retries=0, http_client=http
        )

    def openai(self) -> openai.OpenAI:
        http = openai.DefaultHttpxClient(event_hooks={"request": [self._record]}, timeout=20)
        return openai.OpenAI(
            base_url=self.gateway.v1, api_key=self.gateway.key, max_retries=0, http_client=http
        )


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    vllm = OpenAIEmulator([SERVED], responses=True, messages=True)
    with ServerThread(vllm.app) as v:
        config = make_config(f"""
providers:
  - name: vllm
    type: openai
    base_url: {v.url}/v1
    surfaces: [messages, responses]
models:
  - name: {ALIAS}
    target: vllm/{SERVED}
""")
        with GatewayServer(config) as gw:
            yield Fleet(vllm, f"{v.url}/v1", gw, [])


@pytest.fixture(autouse=True)
def _reset(fleet: Fleet) -> Iterator[None]:
    fleet.sent.clear()
    yield
    fleet.vllm.fault = None


def _unchanged_but_model(fleet: Fleet, path: str) -> dict[str, Any]:
    """The last body the upstream got at ``path``, checked against the client's."""
    got: dict[str, Any] = fleet.vllm.requests_to(path)[-1].json or {}
    sent = json.loads(fleet.sent[-1])
    assert sent["model"] == ALIAS and got["model"] == SERVED
    assert {**got, "model": ALIAS} == sent
    return got


def _masked(data: bytes) -> bytes:
    """``data`` with the ids and timestamps that differ between two answers masked."""
    data = _IDS.sub(b'"ID"', data)
    return re.sub(rb'"created_at":\d+(\.\d+)?', b'"created_at":0', data)


def _direct(fleet: Fleet, path: str, body: dict[str, Any]) -> bytes:
    """The upstream's own answer to ``body`` (with the model it serves)."""
    with httpx.stream("POST", fleet.upstream_url + path, json={**body, "model": SERVED}, timeout=20) as r:
        return r.read()


def _through(fleet: Fleet, path: str, body: dict[str, Any]) -> httpx.Response:
    r = httpx.post(fleet.gateway.v1 + path, json=body, headers=fleet.gateway.headers(), timeout=20)
    assert r.status_code == 200, r.text
    return r


# ---------------------------------------------------------------------------- /v1/messages


def test_messages_pass_through_with_only_the_model_changed(fleet: Fleet) -> None:
    client = fleet.anthropic()
    reply = client.messages.create(
        model=ALIAS,
        max_tokens=64,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello world"}],
        stop_sequences=["zzz"],
        metadata={"user_id": "u-1"},
    )
    assert reply.model == ALIAS and reply.content[0].text == "Echo: hello world"  # type: ignore[union-attr]
    got = _unchanged_but_model(fleet, "/messages")
    assert got["system"][0]["cache_control"] == {"type": "ephemeral"}  # nothing translated away
    assert fleet.vllm.requests_to("/chat/completions") == []
    with client.messages.stream(
        model=ALIAS, max_tokens=64, messages=[{"role": "user", "content": "a b c"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: a b c" and final.model == ALIAS and final.usage.output_tokens > 0
    assert _unchanged_but_model(fleet, "/messages")["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_messages_answer_is_relayed_byte_for_byte_but_the_model(fleet: Fleet, stream: bool) -> None:
    body = {
        "model": ALIAS,
        "max_tokens": 32,
        "stream": stream,
        "messages": [{"role": "user", "content": "x y"}],
    }
    direct = _direct(fleet, "/messages", body)
    through = _through(fleet, "/messages", body)
    assert through.headers["x-corral-model"] == SERVED
    expected = re.sub(rb'("model": ?)"' + SERVED.encode() + rb'"', rb'\1"' + ALIAS.encode() + rb'"', direct)
    assert SERVED.encode() in direct and SERVED.encode() not in through.content
    assert _masked(through.content) == _masked(expected)


def test_messages_tool_use_passes_through(fleet: Fleet) -> None:
    tool: Any = {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object"}}
    reply = fleet.anthropic().messages.create(
        model=ALIAS,
        max_tokens=99,
        tools=[tool],
        tool_choice={"type": "any"},  # the upstream honours it: not refused as for Ollama
        messages=[{"role": "user", "content": 'call read_file {"path": "notes.txt"}'}],
    )
    assert reply.stop_reason == "tool_use"
    assert _unchanged_but_model(fleet, "/messages")["tool_choice"] == {"type": "any"}


# ---------------------------------------------------------------------------- /v1/responses


def test_responses_pass_through_with_only_the_model_changed(fleet: Fleet) -> None:
    client = fleet.openai()
    reply = client.responses.create(
        model=ALIAS,
        instructions="be brief",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hello world"}]}],
        max_output_tokens=64,
        store=False,
        include=["reasoning.encrypted_content"],
        extra_body={"prompt_cache_key": "thread-1"},
    )
    assert reply.model == ALIAS and reply.output_text == "Echo: hello world"
    got = _unchanged_but_model(fleet, "/responses")
    assert got["prompt_cache_key"] == "thread-1"
    with client.responses.stream(model=ALIAS, input="a b c") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Echo: a b c" and final.model == ALIAS and final.usage is not None
    assert _unchanged_but_model(fleet, "/responses")["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_responses_answer_is_relayed_byte_for_byte_but_the_model(fleet: Fleet, stream: bool) -> None:
    body = {"model": ALIAS, "input": "x y", "stream": stream}
    direct = _direct(fleet, "/responses", body)
    through = _through(fleet, "/responses", body)
    assert through.headers["x-corral-model"] == SERVED
    expected = re.sub(rb'("model": ?)"' + SERVED.encode() + rb'"', rb'\1"' + ALIAS.encode() + rb'"', direct)
    assert SERVED.encode() in direct and SERVED.encode() not in through.content
    assert _masked(through.content) == _masked(expected)


# ---------------------------------------------------------------------------- accounting, faults


@pytest.mark.parametrize("surface", [Surface.MESSAGES, Surface.RESPONSES])
@pytest.mark.parametrize("stream", [False, True])
def test_the_usage_is_read_for_accounting(fleet: Fleet, surface: Surface, stream: bool) -> None:
    if surface is Surface.MESSAGES:
        body: dict[str, Any] = {
            "model": ALIAS,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": "a b"}],
        }
    else:
        body = {"model": ALIAS, "input": "a b"}
    body["stream"] = stream
    call = Call(Endpoint.CHAT, body, orjson.dumps(body), ALIAS, stream, "r", surface)

    async def run() -> Any:
        reply = await fleet.gateway.gateway.engine.handle(call)
        if reply.chunks is not None:
            async for _ in reply.chunks:
                pass
        return reply

    reply = fleet.gateway.call(run)
    usage = usage_of(call, reply.outcome)
    path = "/messages" if surface is Surface.MESSAGES else "/responses"
    counted = json.loads(_direct(fleet, path, {**body, "stream": False}))["usage"]  # the upstream's figures
    assert not usage.estimated and usage.completion_tokens > 0
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        counted["input_tokens"],
        counted["output_tokens"],
    )
    assert reply.outcome.error is None


def test_a_stream_cut_midway_ends_with_the_apis_error_event(fleet: Fleet) -> None:
    fleet.vllm.fault = Fault("drop_midstream", after_chunks=3)
    body = {
        "model": ALIAS,
        "max_tokens": 32,
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d"}],
    }
    data = _through(fleet, "/messages", body).content
    assert b"event: message_stop" not in data
    assert data.rstrip().split(b"\n\n")[-1].startswith(b"event: error\ndata: ")
    fleet.vllm.fault = Fault("drop_midstream", after_chunks=3)
    data = _through(fleet, "/responses", {"model": ALIAS, "input": "a b c d", "stream": True}).content
    assert b"response.completed" not in data
    last = data.rstrip().split(b"\n\n")[-1]
    assert last.startswith(b"event: error\ndata: ") and b"incomplete" in last


def test_an_error_before_the_first_byte_is_an_error_in_the_surfaces_envelope(fleet: Fleet) -> None:
    fleet.vllm.fault = Fault("status", status=500, message="boom", times=10)
    with pytest.raises(anthropic.APIStatusError):
        fleet.anthropic().messages.create(
            model=ALIAS, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("surfaces", "kind", "message"),
    [
        (
            "[chat_completions]",
            "openai",
            "unknown surface 'chat_completions'; a openai provider can declare: messages, responses",
        ),
        ("[messages]", "ollama", "applies only to providers of type: openai"),
    ],
)
def test_config_names_the_surfaces_it_knows(surfaces: str, kind: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(f"""
providers:
  - name: p
    type: {kind}
    base_url: http://127.0.0.1:9
    surfaces: {surfaces}
""")


def test_without_the_declaration_the_surfaces_are_translated(fleet: Fleet) -> None:
    config = make_config(f"""
providers:
  - name: vllm
    type: openai
    base_url: {fleet.upstream_url}
models:
  - name: {ALIAS}
    target: vllm/{SERVED}
""")
    before = len(fleet.vllm.requests_to("/chat/completions"))
    with GatewayServer(config) as gw:
        r = httpx.post(
            gw.url + "/v1/messages",
            json={"model": ALIAS, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            headers=gw.headers(),
            timeout=20,
        )
    assert r.status_code == 200 and r.json()["model"] == ALIAS
    assert len(fleet.vllm.requests_to("/chat/completions")) == before + 1
