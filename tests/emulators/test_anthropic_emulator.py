"""The Anthropic emulator, driven by the official ``anthropic`` SDK (and raw httpx for wire details)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.emulators.anthropic import AnthropicEmulator, AnthropicModel
from tests.emulators.anthropic_gen import signature_of
from tests.emulators.common import Fault
from tests.support.servers import ServerThread

KEY = "sk-ant-emulator"
MODEL = "claude-sonnet-4-5"
READ = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
NOW = {"name": "now", "description": "The time", "input_schema": {"type": "object", "properties": {}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture
def emu() -> AnthropicEmulator:
    return AnthropicEmulator([MODEL, AnthropicModel("claude-haiku-4-5", thinking=False)], api_key=KEY)


@pytest.fixture
def server(emu: AnthropicEmulator) -> Iterator[ServerThread]:
    with ServerThread(emu.app) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, timeout=10) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw(
    server: ServerThread, body: Any, headers: dict[str, str] | None = None, path: str = "/v1/messages"
) -> httpx.Response:
    base = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    return httpx.post(server.url + path, json=body, headers=base | (headers or {}), timeout=10)


def test_create_answers_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(
        model=MODEL, max_tokens=64, system="be brief", messages=user("hello world")
    )
    assert reply.id.startswith("msg_") and reply.type == "message" and reply.role == "assistant"
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text == "Echo: hello world"  # type: ignore[union-attr]
    assert (reply.stop_reason, reply.stop_sequence) == ("end_turn", None)
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (4, 3)


def test_stream_sends_named_events_in_order_with_ping(server: ServerThread) -> None:
    body = {"model": MODEL, "max_tokens": 64, "messages": user("a b"), "stream": True}
    with httpx.stream(
        "POST",
        server.url + "/v1/messages",
        json=body,
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    datas = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["type"] for d in datas] == names  # each event's data names its own type
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["stop_reason"] is None
    assert "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta") == "Echo: a b"
    assert datas[-2]["delta"]["stop_reason"] == "end_turn" and datas[-2]["usage"]["output_tokens"] == 3


def test_sdk_stream_accumulates_the_same_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=user("one two three")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: one two three" and final.stop_reason == "end_turn"


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    ask = user('call read_file {"path": "notes.txt"}')
    first = client.messages.create(model=MODEL, max_tokens=200, tools=[READ, NOW], messages=ask)  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use"]
    call = first.content[1]
    assert call.type == "tool_use" and call.name == "read_file" and call.input == {"path": "notes.txt"}
    assert call.id.startswith("toolu_")
    history = [
        *ask,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "pelican"}]},
    ]
    final = client.messages.create(model=MODEL, max_tokens=200, tools=[READ, NOW], messages=history)  # type: ignore[list-item]
    assert final.content[0].text == "Tool result: pelican"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


def test_streamed_tool_input_arrives_as_partial_json(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=200,
        tools=[READ],
        tool_choice={"type": "tool", "name": "read_file"},  # type: ignore[list-item]
        messages=user('please {"path": "a/very/long/path/name.txt"}'),
    ) as stream:
        pieces = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert len([p for p in pieces if p]) > 2  # the JSON is split across several deltas
    assert json.loads("".join(pieces)) == {"path": "a/very/long/path/name.txt"}
    assert [b.type for b in final.content] == ["tool_use"]  # a forced tool comes without text


def test_tool_choice_none_any_and_one_call_at_a_time(client: anthropic.Anthropic) -> None:
    tools: Any = [READ, NOW]
    none = client.messages.create(
        model=MODEL, max_tokens=99, tools=tools, tool_choice={"type": "none"}, messages=user("call now")
    )
    assert none.stop_reason == "end_turn"
    any_ = client.messages.create(
        model=MODEL, max_tokens=99, tools=tools, tool_choice={"type": "any"}, messages=user("hi")
    )
    assert [b.type for b in any_.content] == ["tool_use"] and any_.content[0].name == "read_file"  # type: ignore[union-attr]
    both = client.messages.create(
        model=MODEL, max_tokens=99, tools=tools, messages=user("call now and read_file")
    )
    assert [b.name for b in both.content if b.type == "tool_use"] == ["now", "read_file"]
    one = client.messages.create(
        model=MODEL,
        max_tokens=99,
        tools=tools,
        messages=user("call now and read_file"),
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.name for b in one.content if b.type == "tool_use"] == ["now"]


def test_thinking_blocks_stream_with_a_signature_that_must_come_back_unchanged(
    client: anthropic.Anthropic,
) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("why"),
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert kinds[:-3] == ["thinking_delta"] * len(kinds[:-3]) and "signature_delta" in kinds
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "The user said: why"
    assert thinking.signature == signature_of("The user said: why")
    turn = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]}
    again = [*user("why"), turn, {"role": "user", "content": "and?"}]
    client.messages.create(
        model=MODEL, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, messages=again
    )  # type: ignore[arg-type]
    turn["content"][0]["thinking"] = "edited"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        client.messages.create(model=MODEL, max_tokens=2048, messages=again)  # type: ignore[arg-type]


def test_thinking_display_omitted_keeps_the_signature(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(
        model=MODEL, max_tokens=99, thinking={"type": "adaptive", "display": "omitted"}, messages=user("x")
    )
    assert reply.content[0].type == "thinking" and reply.content[0].thinking == ""
    assert reply.content[0].signature == signature_of("")


def test_image_is_counted(client: anthropic.Anthropic) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    content: Any = [image, {"type": "text", "text": "what is it"}]
    reply = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": content}]
    )
    assert reply.content[0].text == "Echo: what is it [1 image]"  # type: ignore[union-attr]


def test_count_tokens_matches_the_usage_of_the_same_request(client: anthropic.Anthropic) -> None:
    messages: Any = user("count these four words")
    counted = client.messages.count_tokens(
        model=MODEL, system="short system", tools=[READ], messages=messages
    )  # type: ignore[list-item]
    reply = client.messages.create(
        model=MODEL, max_tokens=64, system="short system", tools=[READ], messages=messages
    )  # type: ignore[list-item]
    assert counted.input_tokens == reply.usage.input_tokens > 6


def test_stop_sequences_max_tokens_empty_and_refusal(client: anthropic.Anthropic) -> None:
    stopped = client.messages.create(
        model=MODEL, max_tokens=64, stop_sequences=["two"], messages=user("one two")
    )
    assert (stopped.content[0].text, stopped.stop_reason, stopped.stop_sequence) == (  # type: ignore[union-attr]
        "Echo: one ",
        "stop_sequence",
        "two",
    )
    capped = client.messages.create(model=MODEL, max_tokens=2, messages=user("one two three"))
    assert capped.content[0].text == "Echo: one" and capped.stop_reason == "max_tokens"  # type: ignore[union-attr]
    empty = client.messages.create(model=MODEL, max_tokens=0, messages=user("hi"))
    assert (empty.content, empty.stop_reason, empty.usage.output_tokens) == ([], "max_tokens", 0)
    refused = client.messages.create(model=MODEL, max_tokens=64, messages=user("REFUSE this"))
    assert (refused.content, refused.stop_reason) == ([], "refusal")


def test_consecutive_turns_combine_and_system_messages_are_accepted(client: anthropic.Anthropic) -> None:
    messages: Any = [
        {"role": "user", "content": "first"},
        {"role": "system", "content": "mid-conversation rule"},
        {"role": "user", "content": "second"},
    ]
    reply = client.messages.create(model=MODEL, max_tokens=64, messages=messages)
    assert reply.content[0].text == "Echo: second"  # type: ignore[union-attr]


def test_models_list_and_retrieve(client: anthropic.Anthropic) -> None:
    assert [m.id for m in client.models.list()] == [MODEL, "claude-haiku-4-5"]
    assert client.models.retrieve(MODEL).type == "model"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-9")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": user("x")}, "max_tokens: Field required"),
        (
            {"model": MODEL, "max_tokens": 9, "messages": user("x"), "n": 2},
            "n: Extra inputs are not permitted",
        ),
        ({"model": MODEL, "max_tokens": 9, "messages": user("x"), "temperature": 1.5}, "temperature"),
        ({"model": MODEL, "max_tokens": 9, "messages": []}, "at least one message"),
        ({"model": MODEL, "max_tokens": 9, "messages": [{"role": "tool", "content": "x"}]}, "role"),
        (
            {
                "model": MODEL,
                "max_tokens": 2000,
                "messages": user("x"),
                "thinking": {"type": "enabled", "budget_tokens": 512},
            },
            "greater than or equal to 1024",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 1500,
                "messages": user("x"),
                "thinking": {"type": "enabled", "budget_tokens": 2048},
            },
            "must be greater than `thinking.budget_tokens`",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 9,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}],
                    }
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 9,
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            "without `tool_result` blocks",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 9,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/bmp", "data": PNG},
                            }
                        ],
                    }
                ],
            },
            "media_type",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 9,
                "messages": user("x"),
                "tools": [READ],
                "tool_choice": {"type": "tool", "name": "nope"},
            },
            "not found in provided tools",
        ),
    ],
)
def test_invalid_requests_are_refused_as_the_api_refuses_them(
    server: ServerThread, body: Any, message: str
) -> None:
    resp = raw(server, body)
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"] and error["request_id"].startswith("req_")


def test_auth_version_and_unknown_model(server: ServerThread) -> None:
    body = {"model": MODEL, "max_tokens": 9, "messages": user("x")}
    missing = httpx.post(server.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    wrong = raw(server, body, {"x-api-key": "sk-wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid x-api-key"
    bearer = httpx.post(
        server.url + "/v1/messages",
        json=body,
        headers={"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"},
    )
    assert bearer.status_code == 200
    no_version = httpx.post(server.url + "/v1/messages", json=body, headers={"x-api-key": KEY})
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    unknown = raw(server, body | {"model": "claude-9"})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    no_route = raw(server, body, path="/v1/complete")
    assert no_route.status_code == 404 and no_route.json()["type"] == "error"
    thinks = raw(
        server,
        body
        | {
            "model": "claude-haiku-4-5",
            "max_tokens": 2000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
    )
    assert thinks.status_code == 400 and "thinking" in thinks.json()["error"]["message"]


def test_too_large_is_413_request_too_large(server: ServerThread) -> None:
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\nanthropic-version: 2023-06-01\r\n"
        f"Content-Type: application/json\r\nContent-Length: {33 * 1024 * 1024}\r\n\r\n{{"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reader = sock.makefile("rb")
        status = reader.readline().split()[1]
        headers = dict(
            line.decode().strip().lower().split(": ", 1) for line in iter(reader.readline, b"\r\n")
        )
        body = json.loads(reader.read(int(headers["content-length"])))
    assert status == b"413"
    assert body["error"]["type"] == "request_too_large"


def test_overloaded_is_529_and_rate_limit_429(emu: AnthropicEmulator, client: anthropic.Anthropic) -> None:
    emu.fault = Fault("busy", times=1)
    with pytest.raises(anthropic.OverloadedError) as over:
        client.messages.create(model=MODEL, max_tokens=9, messages=user("x"))
    assert over.value.status_code == 529 and over.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    emu.fault = Fault(
        "status",
        status=429,
        message="Number of requests has exceeded your rate limit",
        retry_after=7,
        times=1,
    )
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODEL, max_tokens=9, messages=user("x"))
    assert limited.value.response.headers["retry-after"] == "7"
    assert client.messages.create(model=MODEL, max_tokens=9, messages=user("x")).stop_reason == "end_turn"


def test_failure_after_the_stream_started_is_an_error_event(
    emu: AnthropicEmulator, client: anthropic.Anthropic
) -> None:
    emu.fault = Fault("midstream_error", after_chunks=4, message="Overloaded", times=1)
    seen: list[str] = []
    stream_call = client.messages.stream(model=MODEL, max_tokens=64, messages=user("a b c d"))
    with pytest.raises(anthropic.APIStatusError) as failed, stream_call as stream:
        seen.extend(e.type for e in stream)
    assert seen[0] == "message_start" and "message_stop" not in seen
    assert failed.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
