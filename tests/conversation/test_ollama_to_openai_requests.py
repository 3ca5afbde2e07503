"""Ollama requests for an OpenAI-type upstream, through the model (the Ollama reader, the OpenAI writer)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import orjson
import pytest

from corral.core.call import Endpoint
from corral.errors import InvalidRequest
from tests.conversation.pairs import (
    OllamaDefaults,
    chat_request,
    chat_to_openai,
    embed_to_openai,
    generate_endpoint,
    generate_to_openai,
)

MODEL = "Qwen/Qwen3-8B"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20)
GIF = b"GIF89a\x01\x00\x01\x00" + bytes(20)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(20)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def chat(body: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    return chat_to_openai(body, MODEL, stream=stream)


def user(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": content}], **extra}


def invalid(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fn(*args, **kwargs)
    return info.value


def sent_by_ollama_client(call: Callable[[ollama.Client], Any]) -> dict[str, Any]:
    """The JSON body the official ``ollama`` client sends for ``call``."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(orjson.loads(request.content))
        answer = {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "embeddings": [],
            "embedding": [],
        }
        return httpx.Response(200, json=answer)

    call(ollama.Client(host="http://ollama.test", transport=httpx.MockTransport(handler)))
    return seen[0]


# -- chat: shape, roles, content ----------------------------------------------------------------


def test_minimal_chat_body() -> None:
    assert chat(user("hi")) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }


def test_stream_asks_for_usage_and_stream_comes_from_argument() -> None:
    out = chat(user("hi", stream=False), stream=True)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert "stream_options" not in chat(user("hi", stream=True), stream=False)


def test_roles_and_null_content() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": None},
            {"role": "assistant", "content": "ok"},
        ]
    }
    assert chat(body)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "ok"},
    ]


@pytest.mark.parametrize("messages", [None, [], "hi", {"role": "user"}])
def test_messages_must_be_a_non_empty_list(messages: Any) -> None:
    err = invalid(chat, {"messages": messages})
    assert err.param == "messages"
    assert "non-empty list" in err.message


def test_unknown_role_and_bad_content_are_rejected_with_the_fix() -> None:
    err = invalid(chat, {"messages": [{"role": "robot", "content": "x"}]})
    assert err.param == "messages[0].role"
    assert "system, user, assistant or tool" in err.message
    err = invalid(chat, {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})
    assert err.param == "messages[0].content"
    err = invalid(chat, {"messages": ["hi"]})
    assert err.param == "messages[0]"


def test_assistant_thinking_is_dropped() -> None:
    body = {"messages": [{"role": "assistant", "content": "4", "thinking": "2+2 is 4"}]}
    assert chat(body)["messages"] == [{"role": "assistant", "content": "4"}]


# -- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (b"BM" * 20, "image/png"),
    ],
)
def test_images_become_data_url_parts_with_sniffed_mime(raw: bytes, mime: str) -> None:
    body = {"messages": [{"role": "user", "content": "what is this?", "images": [b64(raw)]}]}
    assert chat(body)["messages"][0] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64(raw)}"}},
        ],
    }


def test_gif87a_and_data_urls() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": "",
                "images": [b64(b"GIF87a" + bytes(10)), "data:image/jpeg;base64,AAAA"],
            }
        ]
    }
    parts = chat(body)["messages"][0]["content"]
    assert parts[1]["image_url"]["url"].startswith("data:image/gif;base64,R0lGODdh")
    assert parts[2]["image_url"]["url"] == "data:image/jpeg;base64,AAAA"


def test_images_round_trip_through_the_ollama_client_and_back() -> None:
    """The official client base64-encodes raw bytes; corral's reverse translation recovers them."""
    sent = sent_by_ollama_client(
        lambda c: c.chat("m", messages=[{"role": "user", "content": "compare", "images": [PNG, JPEG, WEBP]}])
    )
    openai_body = chat(sent)
    urls = [p["image_url"]["url"] for p in openai_body["messages"][0]["content"][1:]]
    assert [u.split(";")[0] for u in urls] == ["data:image/png", "data:image/jpeg", "data:image/webp"]
    back = chat_request(openai_body, "m", stream=False, defaults=OllamaDefaults())
    assert back["messages"][0]["content"] == "compare"
    assert [base64.b64decode(i) for i in back["messages"][0]["images"]] == [PNG, JPEG, WEBP]


def test_images_only_on_user_messages_and_must_be_strings() -> None:
    err = invalid(chat, {"messages": [{"role": "system", "content": "x", "images": [b64(PNG)]}]})
    assert err.param == "messages[0].images"
    assert "user message" in err.message
    err = invalid(chat, {"messages": [{"role": "user", "content": "x", "images": [123]}]})
    assert err.param == "messages[0].images"
    assert "base64" in err.message


# -- tool calls ---------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def call(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": args}, **extra}


def test_tools_pass_through_unchanged() -> None:
    out = chat(user("weather?", tools=[WEATHER_TOOL]))
    assert out["tools"] == [WEATHER_TOOL]
    assert "tools" not in chat(user("hi", tools=[]))
    assert invalid(chat, user("hi", tools={"a": 1})).param == "tools"


def test_assistant_tool_call_arguments_become_a_json_string_with_ids() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call("get_weather", {"city": "Paris"}),
                    call("get_weather", {"city": "Oslo"}, id="c9"),
                ],
            },
        ]
    }
    msg = chat(body)["messages"][1]
    assert msg["role"] == "assistant"
    assert msg["content"] is None
    first, second = msg["tool_calls"]
    assert first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert first["id"].startswith("call_0_")
    assert second["id"] == "c9"
    assert orjson.loads(second["function"]["arguments"]) == {"city": "Oslo"}


def test_generated_call_ids_are_deterministic_and_distinct() -> None:
    body = {
        "messages": [
            {"role": "assistant", "content": "", "tool_calls": [call("f", {"x": 1}), call("f", {"x": 1})]},
            {"role": "assistant", "content": "", "tool_calls": [call("f", {"x": 1})]},
        ]
    }
    ids = [c["id"] for m in chat(body)["messages"] for c in m["tool_calls"]]
    assert ids == [c["id"] for m in chat(body)["messages"] for c in m["tool_calls"]]
    assert len(set(ids)) == 3
    assert ids[1].startswith("call_1_")


def test_tool_call_with_content_keeps_content_and_string_arguments_pass() -> None:
    body = {
        "messages": [
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"function": {"name": "f", "arguments": '{"a": 1}'}},
                    {"function": {"name": "g"}},
                ],
            }
        ]
    }
    msg = chat(body)["messages"][0]
    assert msg["content"] == "Let me check."
    assert [c["function"]["arguments"] for c in msg["tool_calls"]] == ['{"a": 1}', "{}"]


@pytest.mark.parametrize(
    "bad",
    [["not a call"], [{"function": {"arguments": {}}}], [{"function": {"name": "f", "arguments": 3}}], "x"],
)
def test_malformed_tool_calls_are_rejected(bad: Any) -> None:
    err = invalid(chat, {"messages": [{"role": "assistant", "content": "", "tool_calls": bad}]})
    assert err.param is not None
    assert err.param.startswith("messages[0].tool_calls")


def test_tool_call_round_trip_native_openai_native() -> None:
    """Arguments objects survive native -> OpenAI -> native (corral's reverse translation)."""
    args = {"city": "Paris", "days": 3, "units": {"temp": "C"}, "tags": ["a", "b"]}
    body = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", args)]},
            {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
        ]
    }
    openai_body = chat(body)
    call_id = openai_body["messages"][1]["tool_calls"][0]["id"]
    assert openai_body["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny"}
    back = chat_request(openai_body, "m", stream=False, defaults=OllamaDefaults())
    assert back["messages"][1]["tool_calls"][0]["function"] == {
        "index": 0,
        "name": "get_weather",
        "arguments": args,
    }
    assert back["messages"][2]["tool_name"] == "get_weather"


def test_tool_messages_from_the_ollama_client_translate() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris"})]},
        {"role": "tool", "content": "22C", "tool_name": "get_weather"},
    ]
    sent = sent_by_ollama_client(lambda c: c.chat("m", messages=messages, tools=[WEATHER_TOOL]))
    out = chat(sent)
    assert out["messages"][2]["tool_call_id"] == out["messages"][1]["tool_calls"][0]["id"]
    assert out["tools"][0]["function"]["name"] == "get_weather"


def tool_ids(messages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(ids of the last assistant's calls, tool_call_id of each tool message)."""
    out = chat({"messages": messages})["messages"]
    calls = [
        c["id"] for m in out if m["role"] == "assistant" and m.get("tool_calls") for c in m["tool_calls"]
    ]
    return calls, [m["tool_call_id"] for m in out if m["role"] == "tool"]


def test_tool_messages_match_calls_by_tool_name() -> None:
    calls, answers = tool_ids(
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("get_weather", {}), call("get_time", {})],
            },
            {"role": "tool", "tool_name": "get_time", "content": "noon"},
            {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
        ]
    )
    assert answers == [calls[1], calls[0]]


def test_same_name_calls_are_answered_in_order() -> None:
    calls, answers = tool_ids(
        [
            {"role": "assistant", "content": "", "tool_calls": [call("f", {"n": 1}), call("f", {"n": 2})]},
            {"role": "tool", "tool_name": "f", "content": "1"},
            {"role": "tool", "tool_name": "f", "content": "2"},
        ]
    )
    assert answers == calls


def test_nameless_tool_messages_take_the_unanswered_calls_of_the_latest_turn_in_order() -> None:
    calls, answers = tool_ids(
        [
            {"role": "assistant", "content": "", "tool_calls": [call("old", {})]},
            {"role": "tool", "content": "old result"},
            {"role": "assistant", "content": "", "tool_calls": [call("a", {}), call("b", {})]},
            {"role": "tool", "content": "ra"},
            {"role": "tool", "content": "rb"},
        ]
    )
    assert answers == calls


def test_explicit_tool_call_id_wins_and_counts_as_answered() -> None:
    calls, answers = tool_ids(
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("f", {}, id="A"), call("f", {}, id="B")],
            },
            {"role": "tool", "tool_call_id": "B", "content": "b"},
            {"role": "tool", "tool_name": "f", "content": "a"},
        ]
    )
    assert calls == ["A", "B"]
    assert answers == ["B", "A"]


def test_unknown_tool_name_falls_back_to_an_unanswered_call_and_orphans_get_a_stable_id() -> None:
    calls, answers = tool_ids(
        [
            {"role": "assistant", "content": "", "tool_calls": [call("f", {})]},
            {"role": "tool", "tool_name": "nope", "content": "x"},
            {"role": "tool", "content": "orphan"},
        ]
    )
    assert answers == [calls[0], "call_2_unmatched"]


# -- format, options, think ---------------------------------------------------------------------


def test_format_json_and_schema() -> None:
    assert chat(user(format="json"))["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert chat(user(format=schema))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": False},
    }
    assert "response_format" not in chat(user(format=""))
    assert invalid(chat, user(format="yaml")).param == "format"


def test_options_map_to_openai_fields() -> None:
    options = {
        "num_predict": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "frequency_penalty": 0.1,
        "presence_penalty": 0.3,
        "top_k": 40,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "num_ctx": 8192,
        "num_gpu": 1,
        "num_thread": 8,
        "num_batch": 512,
        "mirostat": 1,
        "typical_p": 0.9,
    }
    out = chat(user(options=options, keep_alive="10m", truncate=True))
    assert {k: v for k, v in out.items() if k not in ("model", "messages", "stream")} == {
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "frequency_penalty": 0.1,
        "presence_penalty": 0.3,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
    }


def test_vllm_extras_are_sent_only_when_set() -> None:
    out = chat(user(options={"temperature": 0}))
    assert out["temperature"] == 0
    assert not {"top_k", "min_p", "repetition_penalty", "max_tokens"} & out.keys()


@pytest.mark.parametrize("limit", [-1, -2, 0])
def test_unlimited_num_predict_sends_no_max_tokens(limit: int) -> None:
    assert "max_tokens" not in chat(user(options={"num_predict": limit}))


def test_integral_floats_and_a_stop_string_are_accepted() -> None:
    out = chat(user(options={"num_predict": 10.0, "seed": 3.0, "stop": "END", "top_k": 5.0}))
    assert (out["max_tokens"], out["seed"], out["stop"], out["top_k"]) == (10, 3, ["END"], 5)
    assert "stop" not in chat(user(options={"stop": []}))


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"temperature": "hot"}, "options.temperature"),
        ({"num_predict": 1.5}, "options.num_predict"),
        ({"seed": True}, "options.seed"),
        ({"stop": [1]}, "options.stop"),
        ({"top_k": "x"}, "options.top_k"),
        ([1], "options"),
    ],
)
def test_bad_options_are_rejected(options: Any, param: str) -> None:
    err = invalid(chat, user(options=options))
    assert err.param == param


@pytest.mark.parametrize(
    ("think", "effort"),
    [(True, "medium"), ("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "high")],
)
def test_think_becomes_reasoning_effort(think: Any, effort: str) -> None:
    assert chat(user(think=think))["reasoning_effort"] == effort


def test_think_false_or_absent_sends_nothing_and_bad_values_fail() -> None:
    assert "reasoning_effort" not in chat(user(think=False))
    assert "reasoning_effort" not in chat(user())
    err = invalid(chat, user(think="extreme"))
    assert err.param == "think"
    assert '"high"' in err.message


def test_logprobs_are_forwarded_for_chat() -> None:
    out = chat(user(logprobs=True, top_logprobs=3))
    assert (out["logprobs"], out["top_logprobs"]) == (True, 3)
    assert "logprobs" not in chat(user(logprobs=False, top_logprobs=3))


# -- generate -----------------------------------------------------------------------------------


def test_generate_goes_to_chat_with_system_images_and_think() -> None:
    body = {
        "model": "alias",
        "prompt": "Describe",
        "system": "Be terse.",
        "images": [b64(JPEG)],
        "think": "low",
        "format": "json",
        "options": {"temperature": 0.5, "num_ctx": 4096},
        "template": "{{ .Prompt }}",
        "context": [1, 2, 3],
        "keep_alive": 0,
    }
    assert generate_endpoint(body) is Endpoint.CHAT
    assert generate_to_openai(body, MODEL, stream=True) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(JPEG)}"}},
                ],
            },
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
    }


def test_generate_from_the_ollama_client() -> None:
    sent = sent_by_ollama_client(
        lambda c: c.generate("m", prompt="Why is the sky blue?", options={"num_predict": 5})
    )
    assert generate_to_openai(sent, MODEL, stream=False) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "stream": False,
        "max_tokens": 5,
    }


def test_raw_generate_goes_to_completions_without_system() -> None:
    body = {
        "prompt": "<|user|>hi",
        "raw": True,
        "system": "ignored",
        "think": True,
        "options": {"stop": ["<|"]},
    }
    assert generate_endpoint(body) is Endpoint.COMPLETION
    assert generate_to_openai(body, MODEL, stream=False) == {
        "model": MODEL,
        "prompt": "<|user|>hi",
        "stream": False,
        "stop": ["<|"],
    }


def test_suffix_goes_to_completions() -> None:
    body = {"prompt": "def add(a, b):\n", "suffix": "\nprint(add(1, 2))", "logprobs": True, "top_logprobs": 2}
    assert generate_endpoint(body) is Endpoint.COMPLETION
    out = generate_to_openai(body, MODEL, stream=True)
    assert out == {
        "model": MODEL,
        "prompt": "def add(a, b):\n",
        "suffix": "\nprint(add(1, 2))",
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": 2,
    }
    assert generate_endpoint({"prompt": "x", "suffix": ""}) is Endpoint.CHAT


def test_generate_rejects_bad_input() -> None:
    assert invalid(generate_to_openai, {"prompt": 1}, MODEL, stream=False).param == "prompt"
    assert invalid(generate_to_openai, {"prompt": "x", "system": 2}, MODEL, stream=False).param == "system"
    err = invalid(generate_to_openai, {"prompt": "x", "raw": True, "images": [b64(PNG)]}, MODEL, stream=False)
    assert err.param == "images"
    assert "drop raw/suffix" in err.message


def test_generate_without_prompt_is_an_empty_user_message() -> None:
    assert generate_to_openai({}, MODEL, stream=False)["messages"] == [{"role": "user", "content": ""}]


# -- embeddings ---------------------------------------------------------------------------------


def test_embed_input_string_and_list() -> None:
    assert embed_to_openai({"input": "hello"}, MODEL) == {"model": MODEL, "input": "hello"}
    body = {
        "input": ["a", "b"],
        "truncate": False,
        "keep_alive": "1m",
        "options": {"num_ctx": 512},
        "dimensions": 256,
    }
    assert embed_to_openai(body, MODEL) == {"model": MODEL, "input": ["a", "b"], "dimensions": 256}


def test_legacy_embeddings_prompt() -> None:
    sent = sent_by_ollama_client(lambda c: c.embeddings("m", prompt="hello"))
    assert embed_to_openai(sent, MODEL) == {"model": MODEL, "input": "hello"}


def test_embed_from_the_ollama_client() -> None:
    sent = sent_by_ollama_client(lambda c: c.embed("m", input=["a", "b"], dimensions=8))
    assert embed_to_openai(sent, MODEL) == {"model": MODEL, "input": ["a", "b"], "dimensions": 8}


@pytest.mark.parametrize(
    ("body", "param"),
    [({}, "prompt"), ({"input": []}, "input"), ({"input": [1, 2]}, "input"), ({"prompt": 5}, "prompt")],
)
def test_embed_rejects_missing_or_non_text_input(body: dict[str, Any], param: str) -> None:
    err = invalid(embed_to_openai, body, MODEL)
    assert err.param == param
    assert "list of strings" in err.message


@pytest.mark.parametrize("dimensions", [0, -3, "8", 1.5])
def test_embed_rejects_bad_dimensions(dimensions: Any) -> None:
    assert invalid(embed_to_openai, {"input": "x", "dimensions": dimensions}, MODEL).param == "dimensions"
