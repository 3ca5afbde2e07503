"""The OpenAI emulator, driven by the official ``openai`` client (and raw httpx for wire details)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.emulators.common import Fault
from tests.emulators.openai import OpenAIEmulator
from tests.support.servers import ServerThread

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
            },
        },
    },
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
]
MODEL = "gpt-4o-mini"


@pytest.fixture
def emu() -> OpenAIEmulator:
    return OpenAIEmulator()


@pytest.fixture
def server(emu: OpenAIEmulator) -> Iterator[ServerThread]:
    with ServerThread(emu.app) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread, emu: OpenAIEmulator) -> Iterator[openai.OpenAI]:
    base_url = server.url + emu.api_root
    with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=10) as c:
        yield c


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL, "text-embedding-3-small"]
    assert client.models.retrieve(MODEL).owned_by == "organization-owner"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-9")
    assert err.value.code == "model_not_found"


def test_chat_completion_with_usage_and_extra_fields(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=ask("hello world"))
    assert reply.choices[0].message.content == "Echo: hello world"
    assert reply.choices[0].finish_reason == "stop" and reply.system_fingerprint == "fp_emulator"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (4, 3, 7)
    assert (reply.model_extra or {})["x_emulator"] == {"served_by": "openai-emulator"}


def test_streaming_with_include_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ask("a b c"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: a b c"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    )
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_wire_format_ends_with_done(server: ServerThread, emu: OpenAIEmulator) -> None:
    resp = httpx.post(
        f"{server.url}{emu.api_root}/chat/completions",
        json={"model": MODEL, "messages": ask("x"), "stream": True},
    )
    assert resp.headers["content-type"] == "text/event-stream"
    events = resp.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert json.loads(events[0].removeprefix("data: "))["object"] == "chat.completion.chunk"


def test_max_tokens_gives_finish_reason_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=ask("one two three"), max_tokens=2)
    assert reply.choices[0].message.content == "Echo: one" and reply.choices[0].finish_reason == "length"


def test_json_response_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ask("p q"), response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "p q"}


def test_tool_calls_have_string_arguments(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=ask("call now and lookup"), tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["now", "lookup"]
    assert json.loads(calls[1].function.arguments) == {"q": "test", "n": 1}
    assert calls[0].id.startswith("call_") and calls[0].id != calls[1].id


def test_streamed_tool_call_reassembles(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=ask('call lookup {"q": "cats and dogs"}'), tools=TOOLS, stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0
            name += (delta.function and delta.function.name) or ""
            arguments += (delta.function and delta.function.arguments) or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, json.loads(arguments), finish) == ("lookup", {"q": "cats and dogs"}, "tool_calls")


def test_tool_result_and_image_parts(client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": "call now"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ]  # fmt: skip
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert reply.choices[0].message.content == "Tool result: noon"
    parts = [
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": parts}])
    assert reply.choices[0].message.content == "Echo: see [1 image]"


def test_completions_streamed_and_not(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="fill me")
    assert reply.choices[0].text == "Echo: fill me" and reply.object == "text_completion"
    chunks = list(client.completions.create(model=MODEL, prompt="fill me", stream=True, max_tokens=2))
    assert "".join(c.choices[0].text for c in chunks) == "Echo: fill"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_embeddings_float_and_base64_agree(client: openai.OpenAI) -> None:
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    as_b64 = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # client asks base64
    assert len(as_float.data) == 2 and len(as_float.data[0].embedding) == 8
    for f, b in zip(as_float.data, as_b64.data, strict=True):
        assert b.embedding == pytest.approx(f.embedding, abs=1e-6)
    small = client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=3)
    assert len(small.data[0].embedding) == 3


def test_unknown_model_and_bad_json(server: ServerThread, emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9", messages=ask("x"))
    assert err.value.code == "model_not_found" and err.value.type == "invalid_request_error"
    bad = httpx.post(f"{server.url}{emu.api_root}/chat/completions", content=b"nope")
    assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "param", "code"}


def test_api_key_and_custom_path_prefix() -> None:
    emu = OpenAIEmulator(api_key="sk-right", path_prefix="/custom")
    with ServerThread(emu.app) as srv:
        base = srv.url + "/custom/v1"
        bad = openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0)
        with bad, pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
        assert err.value.code == "invalid_api_key"
        with openai.OpenAI(base_url=base, api_key="sk-right", max_retries=0) as good:
            assert good.chat.completions.create(model=MODEL, messages=ask("hi")).choices[0].message.content
        auth = {"Authorization": "Bearer sk-right"}
        assert httpx.get(srv.url + "/v1/models", headers=auth).status_code == 404
    (recorded,) = emu.requests_to("/chat/completions")
    assert recorded.path == "/custom/v1/chat/completions"
    assert recorded.headers["authorization"] == "Bearer sk-right" and recorded.json["model"] == MODEL


# ------------------------------------------------------------------ faults


def test_busy_fault_is_a_rate_limit_then_clears(emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    emu.fault = Fault(kind="busy", times=1, retry_after=0)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=MODEL, messages=ask("x"))
    assert err.value.code == "rate_limit_exceeded" and err.value.response.headers["retry-after"] == "0"
    assert (
        client.chat.completions.create(model=MODEL, messages=ask("x")).choices[0].message.content == "Echo: x"
    )


def test_busy_503_and_status_faults(emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    emu.fault = Fault(kind="busy", status=503)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=MODEL, messages=ask("x"))
    assert err.value.status_code == 503
    emu.fault = Fault(kind="status", status=400, message="bad thing")
    with pytest.raises(openai.BadRequestError, match="bad thing"):
        client.completions.create(model=MODEL, prompt="x")


def test_retrying_client_gets_through_a_one_off_fault(emu: OpenAIEmulator, server: ServerThread) -> None:
    emu.fault = Fault(kind="busy", status=503, times=1, retry_after=0)
    with openai.OpenAI(base_url=server.url + emu.api_root, api_key="k", max_retries=2) as retrying:
        assert retrying.chat.completions.create(model=MODEL, messages=ask("x")).choices[0].message.content
    assert len(emu.requests_to("/chat/completions")) == 2 and emu.fault.fired == 1


def test_midstream_error_event(emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    emu.fault = Fault(kind="midstream_error", after_chunks=2, message="upstream fell over")
    seen = []
    with pytest.raises(openai.APIError, match="upstream fell over"):
        for chunk in client.chat.completions.create(model=MODEL, messages=ask("a b c"), stream=True):
            seen.append(chunk)
    assert len(seen) == 2


def test_drop_and_hang_faults(emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    emu.fault = Fault(kind="drop_midstream", after_chunks=1)
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(model=MODEL, messages=ask("a b c"), stream=True))
    emu.fault = Fault(kind="hang_before_headers", seconds=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model=MODEL, messages=ask("x"))


def test_per_model_fault_and_discovery_untouched(emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    emu.model_faults["text-embedding-3-small"] = Fault(kind="status", status=500)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert client.chat.completions.create(model=MODEL, messages=ask("x")).choices[0].message.content
    assert len(client.models.list().data) == 2
