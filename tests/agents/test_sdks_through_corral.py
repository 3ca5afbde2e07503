"""The ``anthropic`` SDK (``/v1/messages``) and ``openai``'s ``client.responses`` (``/v1/responses``)
against a real gateway, over an Ollama-type and an OpenAI-type emulated upstream.

The Ollama emulator validates requests strictly (a field Ollama would ignore is a 400), so a
wrong translation fails here rather than passing unnoticed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.emulators.common import Fault
from tests.emulators.ollama import ModelSpec, OllamaEmulator, default_models
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

READ_A: Any = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}
READ_R: Any = {
    "type": "function",
    "name": "read_file",
    "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
# (corral model name, the emulator that serves it)
UPSTREAMS = [("local", "ollama"), ("thinker", "ollama"), ("coder", "openai")]


@dataclass
class Fleet:
    ollama: OllamaEmulator
    vllm: OpenAIEmulator
    gateway: GatewayServer

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.gateway.url, api_key=self.gateway.key, max_retries=0, timeout=20
        )

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.v1, api_key=self.gateway.key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    # a vision model for the image test: corral routes images only to models that can see them
    ollama = OllamaEmulator([*default_models(), ModelSpec("llava:7b", capabilities=["completion", "vision"])])
    vllm = OpenAIEmulator(["qwen2.5-coder-32b"])
    with ServerThread(ollama.app) as o, ServerThread(vllm.app) as v:
        config = make_config(f"""
providers:
  - name: local
    type: ollama
    base_url: {o.url}
    num_ctx: 65536
    keep_alive: 30m
  - name: vllm
    type: openai
    base_url: {v.url}/v1
models:
  - name: local
    target: local/llama3.2:latest
  - name: thinker
    target: local/qwen3:0.6b
  - name: seer
    target: local/llava:7b
  - name: coder
    target: vllm/qwen2.5-coder-32b
""")
        with GatewayServer(config) as gw:
            yield Fleet(ollama, vllm, gw)


@pytest.fixture(autouse=True)
def _reset(fleet: Fleet) -> Iterator[None]:
    yield
    for emu in (fleet.ollama, fleet.vllm):
        emu.fault = None


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------- /v1/messages


@pytest.mark.parametrize(("model", "kind"), UPSTREAMS)
def test_messages_create_and_stream(fleet: Fleet, model: str, kind: str) -> None:
    client = fleet.anthropic()
    reply = client.messages.create(
        model=model, max_tokens=64, system="be brief", messages=user("hello world")
    )
    assert reply.id.startswith("msg_") and reply.model == model
    assert [b.type for b in reply.content] == ["text"] and reply.content[0].text == "Echo: hello world"  # type: ignore[union-attr]
    assert reply.stop_reason == "end_turn" and reply.usage.output_tokens > 0
    with client.messages.stream(model=model, max_tokens=64, messages=user("a b c")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: a b c" and final.stop_reason == "end_turn" and final.usage.input_tokens > 0


@pytest.mark.parametrize(("model", "kind"), UPSTREAMS)
def test_messages_tool_use_round_trip(fleet: Fleet, model: str, kind: str) -> None:
    client = fleet.anthropic()
    ask = user('call read_file {"path": "notes.txt"}')
    first = client.messages.create(model=model, max_tokens=99, tools=[READ_A], messages=ask)
    calls = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and len(calls) == 1
    assert calls[0].name == "read_file" and calls[0].input == {"path": "notes.txt"} and calls[0].id
    history = [
        *ask,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "pelican"}],
        },
    ]
    with client.messages.stream(model=model, max_tokens=99, tools=[READ_A], messages=history) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Tool result: pelican"  # type: ignore[union-attr]


def test_messages_over_ollama_use_native_chat_with_the_providers_settings(fleet: Fleet) -> None:
    before = len(fleet.ollama.requests_to("/api/chat"))
    fleet.anthropic().messages.create(
        model="local",
        max_tokens=50,
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},
        messages=user("x"),
    )
    sent = fleet.ollama.requests_to("/api/chat")[before].json
    assert sent["options"] == {"num_ctx": 65536, "num_predict": 50, "temperature": 0.5, "stop": ["END"]}
    assert sent["keep_alive"] == "30m" and sent["model"] == "llama3.2:latest"


def test_messages_thinking_blocks_from_a_thinking_model(fleet: Fleet) -> None:
    client = fleet.anthropic()
    reply = client.messages.create(
        model="thinker",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("why"),
    )
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking == "The user said: why" and reply.content[0].signature  # type: ignore[union-attr]
    with client.messages.stream(
        model="thinker",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("why"),
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
    assert "thinking_delta" in kinds and "signature_delta" in kinds and "text_delta" in kinds
    again = [
        *user("why"),
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
        *user("and?"),
    ]
    assert client.messages.create(model="thinker", max_tokens=2048, messages=again).content


def test_messages_image(fleet: Fleet) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    reply = fleet.anthropic().messages.create(
        model="seer",
        max_tokens=64,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "what"}]}],
    )
    assert reply.content[0].text == "Echo: what [1 image]"  # type: ignore[union-attr]


def test_count_tokens(fleet: Fleet) -> None:
    counted = fleet.anthropic().messages.count_tokens(model="local", messages=user("x" * 400))
    assert counted.input_tokens == 100


def test_messages_errors_in_anthropics_envelope(fleet: Fleet) -> None:
    client = fleet.anthropic()
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=9, messages=user("x"))
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="local", max_tokens=9, messages=user("x"), tools=[READ_A], tool_choice={"type": "any"}
        )
    assert "tool_choice" in bad.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=fleet.gateway.url, api_key="sk-wrong", max_retries=0).messages.create(
            model="local", max_tokens=9, messages=user("x")
        )
    assert denied.value.body["type"] == "error"  # type: ignore[index]
    resp = httpx.post(
        fleet.gateway.url + "/v1/messages",
        json={"model": "local", "messages": user("x")},
        headers={"x-api-key": fleet.gateway.key, "anthropic-version": "2023-06-01"},
    )
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in resp.json()["error"]["message"]
    fleet.ollama.fault = Fault("busy", times=1)
    with pytest.raises(anthropic.OverloadedError) as busy:
        client.messages.create(model="local", max_tokens=9, messages=user("x"))
    assert busy.value.status_code == 529


def test_messages_stream_cut_midway_ends_with_an_error_event(fleet: Fleet) -> None:
    fleet.ollama.fault = Fault("midstream_error", after_chunks=2, message="model crashed", times=1)
    with (
        pytest.raises(anthropic.APIStatusError),
        fleet.anthropic().messages.stream(model="local", max_tokens=64, messages=user("a b c d e")) as stream,
    ):
        for _ in stream:
            pass


# ---------------------------------------------------------------------------- /v1/responses


@pytest.mark.parametrize(("model", "kind"), UPSTREAMS)
def test_responses_create_and_stream(fleet: Fleet, model: str, kind: str) -> None:
    client = fleet.openai()
    reply = client.responses.create(model=model, input="hello world", instructions="be brief")
    assert reply.status == "completed" and reply.output_text == "Echo: hello world" and reply.model == model
    assert (
        reply.usage is not None
        and reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    )
    events = list(client.responses.create(model=model, input="a b", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Echo: a b"


@pytest.mark.parametrize(("model", "kind"), UPSTREAMS)
def test_responses_function_call_round_trip(fleet: Fleet, model: str, kind: str) -> None:
    client = fleet.openai()
    first = client.responses.create(model=model, input='call read_file {"path": "n.txt"}', tools=[READ_R])
    calls = [i for i in first.output if i.type == "function_call"]
    assert len(calls) == 1 and json.loads(calls[0].arguments) == {"path": "n.txt"}
    history: Any = [
        {"role": "user", "content": 'call read_file {"path": "n.txt"}'},
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": "read_file",
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "pelican"},
    ]
    events = list(client.responses.create(model=model, input=history, tools=[READ_R], stream=True))
    assert (
        events[-1].type == "response.completed" and events[-1].response.output_text == "Tool result: pelican"
    )


def test_responses_json_schema_and_reasoning(fleet: Fleet) -> None:
    client = fleet.openai()
    fmt: Any = {"type": "json_schema", "name": "echo", "schema": {"type": "object"}}
    reply = client.responses.create(model="local", input="hi", text={"format": fmt})
    assert json.loads(reply.output_text) == {"echo": "hi"}
    thought = client.responses.create(
        model="thinker", input="why", reasoning={"effort": "low", "summary": "auto"}
    )
    assert thought.output[0].type == "reasoning" and thought.output[0].summary[0].text == "The user said: why"


def test_responses_stateless_refusals_and_errors(fleet: Fleet) -> None:
    client = fleet.openai()
    with pytest.raises(openai.BadRequestError) as prev:
        client.responses.create(model="local", input="x", previous_response_id="resp_1")
    assert "stateless" in prev.value.message and prev.value.param == "previous_response_id"
    with pytest.raises(openai.BadRequestError, match="stateless"):
        client.responses.create(model="local", input="x", store=True)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
    fleet.ollama.fault = Fault("midstream_error", after_chunks=2, message="model crashed", times=1)
    events = list(client.responses.create(model="local", input="a b c d e", stream=True))
    assert events[-1].type == "response.failed"


@pytest.mark.parametrize("stream", [False, True])
def test_a_deployment_failing_before_its_first_token_fails_over(stream: bool) -> None:
    first, second = OllamaEmulator(), OllamaEmulator()
    with ServerThread(first.app) as a, ServerThread(second.app) as b:
        config = make_config(
            {
                "providers": [
                    {"name": "a", "type": "ollama", "base_url": a.url},
                    {"name": "b", "type": "ollama", "base_url": b.url},
                ],
                "models": [{"name": "m", "targets": ["a/llama3.2", "b/llama3.2"], "strategy": "priority"}],
            }
        )
        with GatewayServer(config) as gw:
            once = Fault("midstream_error", after_chunks=0, message="model crashed", times=1)
            first.fault = second.fault = once  # one fault for both: whichever is tried first fails, once
            client = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0, timeout=20)
            if stream:
                with client.messages.stream(model="m", max_tokens=64, messages=user("x")) as s:
                    text = "".join(s.text_stream)
            else:
                text = client.messages.create(model="m", max_tokens=64, messages=user("x")).content[0].text  # type: ignore[union-attr]
            assert text == "Echo: x"
            tried = len(first.requests_to("/api/chat")) + len(second.requests_to("/api/chat"))
            assert tried == 2  # one failed, the other answered
