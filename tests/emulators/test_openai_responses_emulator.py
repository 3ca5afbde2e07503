"""The OpenAI emulator's Responses API mode, driven by ``openai``'s ``client.responses``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.emulators.common import Fault
from tests.emulators.openai import OpenAIEmulator, OpenAIModel
from tests.support.servers import ServerThread

MODEL, THINKER = "qwen3-coder", "gpt-oss-20b"
READ: Any = {
    "type": "function",
    "name": "read_file",
    "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}


@pytest.fixture
def emu() -> OpenAIEmulator:
    return OpenAIEmulator([MODEL, OpenAIModel(THINKER, reasoning=True)], responses=True)


@pytest.fixture
def server(emu: OpenAIEmulator) -> Iterator[ServerThread]:
    with ServerThread(emu.app) as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread, emu: OpenAIEmulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + emu.api_root, api_key="sk-x", max_retries=0, timeout=10) as c:
        yield c


def test_create_from_a_string(client: openai.OpenAI) -> None:
    reply = client.responses.create(model=MODEL, input="hello world", instructions="be brief")
    assert reply.id.startswith("resp_") and reply.status == "completed" and reply.object == "response"
    assert reply.output_text == "Echo: hello world"
    assert [item.type for item in reply.output] == ["message"]
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (4, 3, 7)
    assert reply.store is False  # stateless: nothing is kept, whatever was asked


def test_stream_sends_typed_events_in_order(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model=MODEL, input="a b", stream=True))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Echo: a b"
    done = events[-1]
    assert done.type == "response.completed" and done.response.usage is not None
    assert done.response.output_text == "Echo: a b"


def test_sse_lines_name_each_event(server: ServerThread, emu: OpenAIEmulator) -> None:
    body = {"model": MODEL, "input": "x", "stream": True}
    with httpx.stream("POST", server.url + emu.api_root + "/responses", json=body) as resp:
        lines = [line for line in resp.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    datas = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert names == [d["type"] for d in datas] and "[DONE]" not in "".join(lines)


def test_function_call_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input='call read_file {"path": "notes.txt"}', tools=[READ])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "read_file"
    assert json.loads(calls[0].arguments) == {"path": "notes.txt"} and calls[0].call_id
    history: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": 'call read_file {"path": "notes.txt"}'}]},
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": "read_file",
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "pelican"},
    ]
    final = client.responses.create(model=MODEL, input=history, tools=[READ])
    assert final.output_text == "Tool result: pelican"


def test_streamed_function_arguments_reassemble(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model=MODEL, input='call read_file {"path": "a/b/c/d.txt"}', tools=[READ], stream=True
        )
    )
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert len(deltas) > 1 and "".join(deltas) == done.arguments
    assert json.loads(done.arguments) == {"path": "a/b/c/d.txt"}
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call" and added.output_index == 0


def test_json_schema_output(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "name": "echo", "schema": {"type": "object"}}
    reply = client.responses.create(model=MODEL, input="hi", text={"format": fmt})
    assert json.loads(reply.output_text) == {"echo": "hi"}


def test_reasoning_with_summary_and_encrypted_content(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model=THINKER,
        input="why",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    reasoning = reply.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "The user said: why"
    assert reasoning.encrypted_content
    assert reply.usage is not None and reply.usage.output_tokens_details.reasoning_tokens == 4
    events = list(
        client.responses.create(
            model=THINKER, input="why", reasoning={"effort": "low", "summary": "auto"}, stream=True
        )
    )
    kinds = {e.type for e in events}
    assert {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"} <= kinds


def test_stateful_requests_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input="x", previous_response_id="resp_123")
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError, match="send the whole input"):
        client.responses.create(model=MODEL, input="x", conversation="conv_1")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_output_tokens": 5}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),  # the model does not reason
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "r"}]},
            "input[0].call_id",
        ),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"tools": [READ], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ],
)
def test_invalid_requests(
    server: ServerThread, emu: OpenAIEmulator, extra: dict[str, Any], param: str
) -> None:
    resp = httpx.post(server.url + emu.api_root + "/responses", json={"model": MODEL, "input": "x"} | extra)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_parameters_and_tools_ignored_unless_strict(
    server: ServerThread, emu: OpenAIEmulator
) -> None:
    url = server.url + emu.api_root + "/responses"
    body = {"model": MODEL, "input": "x", "client_metadata": {"a": "b"}, "tools": [{"type": "web_search"}]}
    assert httpx.post(url, json=body).status_code == 200
    emu.responses_strict = True
    strict = httpx.post(url, json=body)
    assert strict.status_code == 400 and strict.json()["error"]["code"] == "unknown_parameter"


def test_without_the_mode_there_is_no_responses_route() -> None:
    plain = OpenAIEmulator()
    with ServerThread(plain.app) as srv:
        assert (
            httpx.post(srv.url + "/v1/responses", json={"model": "gpt-4o-mini", "input": "x"}).status_code
            == 404
        )


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    words = " ".join(["w"] * 30)
    reply = client.responses.create(model=MODEL, input=words, max_output_tokens=16)
    assert reply.status == "incomplete" and reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    events = list(client.responses.create(model=MODEL, input=words, max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"


def test_failure_after_the_stream_started_is_response_failed(
    emu: OpenAIEmulator, client: openai.OpenAI
) -> None:
    emu.fault = Fault("midstream_error", after_chunks=4, message="engine died", times=1)
    events = list(client.responses.create(model=MODEL, input="a b c d", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None and events[-1].response.error.message == "engine died"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_busy_and_unknown_model(emu: OpenAIEmulator, client: openai.OpenAI) -> None:
    emu.fault = Fault("busy", times=1)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=MODEL, input="x")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-9", input="x")
    assert client.responses.create(model=MODEL, input="x").status == "completed"
