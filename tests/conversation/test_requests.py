"""Requests through the model: each API's reader and writer, and the model they meet in."""

from __future__ import annotations

import pytest

from corral.conversation.call import Endpoint
from corral.conversation.ollama import requests as ollama
from corral.conversation.openai import requests as openai
from corral.conversation.request import Image, Text, ToolCall
from corral.errors import InvalidRequest

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_openai_tool_conversation_reads_into_complete_tool_calls_and_results() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "look", "arguments": '{"q": 1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        ],
    }
    req = openai.read(Endpoint.CHAT, body)
    system, user, assistant, tool = req.messages
    assert system.role == "system" and system.text() == "be brief"
    assert user.content == [Text("what is this?"), Image(PNG, "image/png")]
    assert assistant.tool_calls == [ToolCall("look", {"q": 1}, "c1", 0)]
    assert (tool.tool_call_id, tool.tool_name) == ("c1", "look")


def test_ollama_tool_result_without_an_id_answers_the_open_call_of_its_name() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather and time?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "weather", "arguments": {}}},
                    {"function": {"name": "time", "arguments": {}}},
                ],
            },
            {"role": "tool", "tool_name": "time", "content": "noon"},
            {"role": "tool", "content": "sunny"},
        ],
    }
    req = ollama.read(Endpoint.CHAT, body)
    weather, time = req.messages[1].tool_calls
    assert weather.id and time.id and weather.id != time.id  # made up, stable
    assert [m.tool_call_id for m in req.messages[2:]] == [time.id, weather.id]
    assert ollama.read(Endpoint.CHAT, body).messages[1].tool_calls[0].id == weather.id


def test_an_ollama_image_goes_to_openai_as_a_sniffed_data_url() -> None:
    req = ollama.read(
        Endpoint.CHAT, {"model": "m", "messages": [{"role": "user", "content": "x", "images": [PNG]}]}
    )
    _, out = openai.write(req, "gpt")
    assert out["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    assert (
        out["stream_options"] == {"include_usage": True} if out.get("stream") else "stream_options" not in out
    )


def test_ollama_generate_goes_to_chat_unless_raw() -> None:
    chat = ollama.read(Endpoint.COMPLETION, {"model": "m", "prompt": "hi", "system": "s"})
    assert openai.write(chat, "gpt")[0] is Endpoint.CHAT
    raw = ollama.read(Endpoint.COMPLETION, {"model": "m", "prompt": "hi", "raw": True})
    assert openai.write(raw, "gpt") == (
        Endpoint.COMPLETION,
        {"model": "gpt", "prompt": "hi", "stream": True, "stream_options": {"include_usage": True}},
    )


def test_sampling_wins_over_the_clients_options_and_the_pin_over_both() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "options": {"temperature": 0.1, "num_ctx": 2048},
        "temperature": 0.9,
        "max_tokens": 5,
        "num_ctx": 4096,
    }
    defaults = ollama.OllamaDefaults(options={"top_k": 3, "temperature": 0.5}, num_ctx=1024)
    out = ollama.write(openai.read(Endpoint.CHAT, body), "llama3.2", defaults=defaults)
    assert out["options"] == {"top_k": 3, "temperature": 0.9, "num_ctx": 4096, "num_predict": 5}
    pinned = ollama.write(openai.read(Endpoint.CHAT, body), "llama3.2", defaults=defaults, num_ctx=8192)
    assert pinned["options"]["num_ctx"] == 8192


def test_readers_name_the_bad_field() -> None:
    with pytest.raises(InvalidRequest) as bad:
        ollama.read(
            Endpoint.CHAT,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}},
        )
    assert bad.value.param == "options.temperature"
    with pytest.raises(InvalidRequest) as remote:
        openai.read(
            Endpoint.CHAT,
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ],
            },
        )
    assert "does not fetch remote images" in remote.value.message
