"""OpenAI requests for an Ollama upstream, through the model (the OpenAI reader, the Ollama writer)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.errors import InvalidRequest
from tests.conversation.pairs import (
    OllamaDefaults,
    chat_request,
    embed_request,
    generate_request,
)

NO_DEFAULTS = OllamaDefaults()
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def chat(
    body: dict[str, Any], *, stream: bool = False, defaults: OllamaDefaults = NO_DEFAULTS
) -> dict[str, Any]:
    return chat_request(body, "llama3.2:3b", stream=stream, defaults=defaults)


def user(content: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": content}]}


def invalid(fn: Any, *args: Any, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fn(*args, **kwargs)
    return info.value


# -- chat: shape, roles, content ----------------------------------------------------------------


def test_minimal_chat_body_is_clean_and_uses_upstream_model() -> None:
    out = chat(user("hi"), stream=True)
    assert out == {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_stream_flag_comes_from_argument_not_body() -> None:
    body = {**user("hi"), "stream": True}
    assert chat(body, stream=False)["stream"] is False


def test_roles_developer_becomes_system_and_none_content_is_empty() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "q", "name": "alice"},
            {"role": "assistant", "content": None, "refusal": None, "audio": None, "name": "bot"},
        ]
    }
    assert chat(body)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": ""},
    ]


def test_unknown_role_is_rejected_with_param() -> None:
    err = invalid(chat, {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "x"}]})
    assert err.param == "messages[1].role"
    assert "robot" in err.message


@pytest.mark.parametrize("messages", [None, [], "hello", [{"role": "user", "content": 5}], ["text"]])
def test_malformed_messages_are_rejected(messages: Any) -> None:
    err = invalid(chat, {"messages": messages})
    assert err.param is not None and err.param.startswith("messages")


def test_text_parts_are_joined_with_newlines() -> None:
    parts = [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]
    assert chat(user(parts))["messages"][0] == {"role": "user", "content": "line one\nline two"}


def test_data_url_images_become_base64_payloads() -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "high"}},
        {"type": "image_url", "image_url": f"data:image/jpeg;base64,{PNG_B64}"},
    ]
    msg = chat(user(parts))["messages"][0]
    assert msg == {"role": "user", "content": "what is this?", "images": [PNG_B64, PNG_B64]}


def test_remote_image_url_is_rejected_with_fix() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "a"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            },
        ]
    }
    err = invalid(chat, body)
    assert err.param == "messages[2].content[1].image_url"
    assert "does not fetch remote images" in err.message
    assert "base64" in err.message and "data:" in err.message
    assert err.status == 400


def test_non_base64_data_url_is_rejected() -> None:
    err = invalid(chat, user([{"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]))
    assert err.param == "messages[0].content[0].image_url"
    assert "base64" in err.message


@pytest.mark.parametrize("kind", ["input_audio", "file", "video_url"])
def test_unsupported_part_types_are_rejected_by_name(kind: str) -> None:
    err = invalid(chat, user([{"type": "text", "text": "x"}, {"type": kind, kind: {}}]))
    assert err.param == "messages[0].content[1]"
    assert repr(kind) in err.message


def test_text_part_without_text_is_rejected() -> None:
    err = invalid(chat, user([{"type": "text"}]))
    assert err.param == "messages[0].content[0]"


# -- chat: tools ---------------------------------------------------------------------------------


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def tool_round_trip() -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": "weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "I should call the tool twice.",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"city": "Oslo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "sunny"}]},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "?"},
        ],
        "tools": TOOLS,
    }


def test_assistant_tool_calls_get_object_arguments_ids_and_indexes() -> None:
    msgs = chat(tool_round_trip())["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": "",
        "thinking": "I should call the tool twice.",
        "tool_calls": [
            {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {"city": "Oslo"}}},
        ],
    }


def test_tool_results_carry_id_and_name_looked_up_from_earlier_call() -> None:
    msgs = chat(tool_round_trip())["messages"]
    assert msgs[2] == {"role": "tool", "content": "12:00", "tool_call_id": "call_b", "tool_name": "get_time"}
    assert msgs[3] == {
        "role": "tool",
        "content": "sunny",
        "tool_call_id": "call_a",
        "tool_name": "get_weather",
    }
    assert msgs[4] == {"role": "tool", "content": "?", "tool_call_id": "call_unknown"}


def test_reasoning_field_also_becomes_thinking() -> None:
    body = {"messages": [{"role": "assistant", "content": "a", "reasoning": "hmm"}]}
    assert chat(body)["messages"][0] == {"role": "assistant", "content": "a", "thinking": "hmm"}


@pytest.mark.parametrize("arguments", ["", None])
def test_empty_arguments_become_empty_object(arguments: Any) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "now", "arguments": arguments}}
    body = {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}
    assert chat(body)["messages"][0]["tool_calls"][0]["function"]["arguments"] == {}


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", "42"])
def test_bad_arguments_are_rejected_naming_the_param(arguments: str) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]}
    err = invalid(chat, body)
    assert err.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_call_without_function_name_is_rejected() -> None:
    body = {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]}
    assert invalid(chat, body).param == "messages[0].tool_calls[0]"


def test_tools_pass_through_unchanged() -> None:
    out = chat({**user("x"), "tools": TOOLS, "parallel_tool_calls": False})
    assert out["tools"] == TOOLS
    assert "parallel_tool_calls" not in out


@pytest.mark.parametrize(
    "choice", ["auto", "required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_tool_choice_other_than_none_still_sends_tools(choice: Any) -> None:
    out = chat({**user("x"), "tools": TOOLS, "tool_choice": choice})
    assert out["tools"] == TOOLS
    assert "tool_choice" not in out


def test_tool_choice_none_withholds_tools() -> None:
    assert "tools" not in chat({**user("x"), "tools": TOOLS, "tool_choice": "none"})


def test_empty_tools_list_is_omitted() -> None:
    assert "tools" not in chat({**user("x"), "tools": []})


# -- options -------------------------------------------------------------------------------------


def test_sampling_fields_map_to_same_named_options() -> None:
    body = {
        **user("x"),
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
        "stop": "END",
    }
    assert chat(body)["options"] == {
        "num_predict": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
        "stop": ["END"],
    }


def test_frequency_penalty_is_not_mapped_to_repeat_penalty() -> None:
    options = chat({**user("x"), "frequency_penalty": 1.0})["options"]
    assert "repeat_penalty" not in options
    assert options["frequency_penalty"] == 1.0


def test_max_completion_tokens_and_stop_list() -> None:
    options = chat({**user("x"), "max_completion_tokens": 10, "stop": ["a", "b"]})["options"]
    assert options == {"num_predict": 10, "stop": ["a", "b"]}


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    options = chat({**user("x"), "max_tokens": 99, "max_completion_tokens": 10})["options"]
    assert options["num_predict"] == 10


def test_native_extras_go_into_options() -> None:
    extras = {
        "top_k": 40,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "repeat_last_n": 64,
        "num_ctx": 8192,
        "num_predict": 128,
        "typical_p": 0.7,
    }
    out = chat({**user("x"), **extras, "mirostat": 2})  # gone from Ollama (0.7): not forwarded
    assert out["options"] == extras
    assert not set(extras) & set(out)  # none left at the top level


def test_null_fields_are_ignored() -> None:
    body = {**user("x"), "temperature": None, "max_tokens": None, "stop": None, "seed": None, "n": None}
    assert "options" not in chat(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", "hot"),
        ("temperature", True),
        ("seed", 1.5),
        ("max_tokens", 0),
        ("max_tokens", "10"),
        ("top_k", 2.5),
        ("stop", 5),
        ("stop", ["ok", 3]),
        ("options", ["num_ctx"]),
        ("keep_alive", True),
        ("keep_alive", {"minutes": 5}),
    ],
)
def test_bad_option_values_are_rejected(field: str, value: Any) -> None:
    assert invalid(chat, {**user("x"), field: value}).param == field


def test_integral_floats_are_accepted_for_integer_fields() -> None:
    assert chat({**user("x"), "max_tokens": 32.0})["options"]["num_predict"] == 32


def test_option_precedence_defaults_then_client_options_then_top_level() -> None:
    defaults = OllamaDefaults(
        keep_alive="30m",
        num_ctx=4096,
        options={"temperature": 0.1, "num_ctx": 2048, "top_k": 10, "num_batch": 256},
    )
    body = {**user("x"), "options": {"temperature": 0.5, "top_k": 20}, "top_k": 30}
    options = chat(body, defaults=defaults)["options"]
    assert options == {"temperature": 0.5, "num_ctx": 4096, "top_k": 30, "num_batch": 256}


def test_num_ctx_request_wins_top_level_or_in_options() -> None:
    defaults = OllamaDefaults(num_ctx=4096)
    assert chat({**user("x"), "num_ctx": 16384}, defaults=defaults)["options"]["num_ctx"] == 16384
    assert chat({**user("x"), "options": {"num_ctx": 8192}}, defaults=defaults)["options"]["num_ctx"] == 8192
    assert chat(user("x"), defaults=defaults)["options"] == {"num_ctx": 4096}
    assert "options" not in chat(user("x"))


def test_defaults_are_not_mutated() -> None:
    defaults = OllamaDefaults(options={"temperature": 0.1})
    chat({**user("x"), "temperature": 0.9}, defaults=defaults)
    assert defaults.options == {"temperature": 0.1}


def test_keep_alive_request_wins_else_default_else_absent() -> None:
    defaults = OllamaDefaults(keep_alive="30m")
    assert chat({**user("x"), "keep_alive": 0}, defaults=defaults)["keep_alive"] == 0
    assert chat({**user("x"), "keep_alive": "-1"}, defaults=defaults)["keep_alive"] == "-1"
    assert chat(user("x"), defaults=defaults)["keep_alive"] == "30m"
    assert "keep_alive" not in chat(user("x"))


# -- response_format, reasoning, logprobs, n, dropped fields ------------------------------------


def test_response_format_json_object() -> None:
    assert chat({**user("x"), "response_format": {"type": "json_object"}})["format"] == "json"


def test_response_format_json_schema_sends_the_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "thing", "strict": True, "schema": schema}}
    assert chat({**user("x"), "response_format": fmt})["format"] == schema


def test_response_format_text_sends_nothing() -> None:
    assert "format" not in chat({**user("x"), "response_format": {"type": "text"}})


@pytest.mark.parametrize(
    "fmt", [{"type": "xml"}, "json", {"type": "json_schema", "json_schema": {"schema": 3}}]
)
def test_bad_response_format_is_rejected(fmt: Any) -> None:
    err = invalid(chat, {**user("x"), "response_format": fmt})
    assert err.param is not None and err.param.startswith("response_format")


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        ("none", False),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("high", "high"),
        ("max", "max"),
    ],
)
def test_reasoning_effort_maps_to_think(effort: str, think: Any) -> None:
    assert chat({**user("x"), "reasoning_effort": effort})["think"] == think
    assert chat({**user("x"), "reasoning": {"effort": effort}})["think"] == think


def test_think_in_body_wins_as_given() -> None:
    assert chat({**user("x"), "reasoning_effort": "high", "think": False})["think"] is False
    assert chat({**user("x"), "think": "medium"})["think"] == "medium"
    assert "think" not in chat(user("x"))


def test_unknown_reasoning_effort_is_rejected() -> None:
    assert invalid(chat, {**user("x"), "reasoning_effort": "extreme"}).param == "reasoning_effort"
    assert invalid(chat, {**user("x"), "reasoning": {"effort": 3}}).param == "reasoning.effort"


def test_logprobs_pass_through_top_level() -> None:
    out = chat({**user("x"), "logprobs": True, "top_logprobs": 3})
    assert out["logprobs"] is True and out["top_logprobs"] == 3
    assert "options" not in out


def test_n_greater_than_one_is_rejected_and_one_is_fine() -> None:
    assert invalid(chat, {**user("x"), "n": 2}).param == "n"
    assert "n" not in chat({**user("x"), "n": 1})


def test_openai_only_and_unknown_fields_are_not_forwarded() -> None:
    body = {
        **user("x"),
        "user": "u1",
        "metadata": {"a": "b"},
        "store": True,
        "service_tier": "auto",
        "stream_options": {"include_usage": True},
        "logit_bias": {"1": 2},
        "whatever": 1,
    }
    assert set(chat(body)) == {"model", "messages", "stream"}


def test_body_is_not_mutated_and_output_is_json_serialisable() -> None:
    body = tool_round_trip()
    before = orjson.dumps(body)
    out = chat(body, defaults=OllamaDefaults(num_ctx=2048, options={"top_k": 5}))
    assert orjson.dumps(body) == before
    assert orjson.loads(orjson.dumps(out)) == out


# -- /v1/completions -> /api/generate -----------------------------------------------------------


def gen(
    body: dict[str, Any], *, stream: bool = False, defaults: OllamaDefaults = NO_DEFAULTS
) -> dict[str, Any]:
    return generate_request(body, "qwen2.5-coder:1.5b", stream=stream, defaults=defaults)


def test_generate_basic_with_options_and_suffix() -> None:
    body = {"model": "a", "prompt": "def f(", "suffix": "\n    return x", "max_tokens": 20, "stop": ["\n\n"]}
    assert gen(body, stream=True, defaults=OllamaDefaults(keep_alive=300)) == {
        "model": "qwen2.5-coder:1.5b",
        "prompt": "def f(",
        "suffix": "\n    return x",
        "stream": True,
        "options": {"num_predict": 20, "stop": ["\n\n"]},
        "keep_alive": 300,
    }


def test_generate_prompt_list_of_one_string() -> None:
    assert gen({"prompt": ["only one"]})["prompt"] == "only one"


@pytest.mark.parametrize("prompt", [["a", "b"], [1, 2, 3], [[1, 2]], None, 5, []])
def test_generate_rejects_prompts_ollama_cannot_take(prompt: Any) -> None:
    assert invalid(gen, {"prompt": prompt}).param == "prompt"


def test_generate_multiple_prompts_message_says_one_per_request() -> None:
    assert "one prompt per request" in invalid(gen, {"prompt": ["a", "b"]}).message


def test_generate_rejects_echo_best_of_and_n() -> None:
    assert invalid(gen, {"prompt": "p", "echo": True}).param == "echo"
    assert invalid(gen, {"prompt": "p", "best_of": 3}).param == "best_of"
    assert invalid(gen, {"prompt": "p", "n": 4}).param == "n"
    assert gen({"prompt": "p", "echo": False, "best_of": 1, "n": 1})["prompt"] == "p"


def test_generate_native_fields_pass_through() -> None:
    body = {"prompt": "p", "raw": True, "system": "sys", "images": [PNG_B64], "think": True, "format": "json"}
    out = gen(body)
    for name in ("raw", "system", "images", "think", "format"):
        assert out[name] == body[name]


def test_generate_logprobs_integer_becomes_logprobs_and_top_logprobs() -> None:
    out = gen({"prompt": "p", "logprobs": 2})
    assert out["logprobs"] is True and out["top_logprobs"] == 2


def test_generate_drops_unknown_fields() -> None:
    out = gen({"prompt": "p", "user": "u", "logit_bias": {}, "stream_options": {"include_usage": True}})
    assert set(out) == {"model", "prompt", "stream"}


# -- /v1/embeddings -> /api/embed ---------------------------------------------------------------


def emb(body: dict[str, Any], defaults: OllamaDefaults = NO_DEFAULTS) -> dict[str, Any]:
    return embed_request(body, "nomic-embed-text", defaults=defaults)


def test_embed_string_and_list() -> None:
    assert emb({"input": "hello"}) == {"model": "nomic-embed-text", "input": "hello"}
    assert emb({"input": ["a", "b"]})["input"] == ["a", "b"]


def test_embed_dimensions_truncate_options_keep_alive() -> None:
    out = emb(
        {
            "input": "x",
            "dimensions": 256,
            "truncate": False,
            "options": {"num_thread": 2},
            "encoding_format": "base64",
        },
        OllamaDefaults(keep_alive="1h", num_ctx=2048),
    )
    assert out == {
        "model": "nomic-embed-text",
        "input": "x",
        "dimensions": 256,
        "truncate": False,
        "options": {"num_ctx": 2048, "num_thread": 2},
        "keep_alive": "1h",
    }


@pytest.mark.parametrize("tokens", [[1, 2, 3], [[1, 2], [3]]])
def test_embed_token_arrays_are_rejected(tokens: Any) -> None:
    err = invalid(emb, {"input": tokens})
    assert err.param == "input"
    assert "text only" in err.message


@pytest.mark.parametrize("value", [None, [], 3])
def test_embed_missing_input_is_rejected(value: Any) -> None:
    assert invalid(emb, {"input": value}).param == "input"


def test_embed_bad_encoding_format_is_rejected() -> None:
    assert invalid(emb, {"input": "x", "encoding_format": "int8"}).param == "encoding_format"
