"""Ollama answers for an OpenAI client, through the model (the Ollama reader, the OpenAI writer)."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import orjson
import pytest

from corral.errors import InvalidRequest
from tests.conversation.pairs import (
    ChatStreamTranslator,
    CompletionStreamTranslator,
    chat_response,
    completion_response,
    embedding_response,
    finish_reason,
)

RID = "chatcmpl-corral123"
MODEL = "llama3.2"
CREATED = 1_700_000_000


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def chat_line(content: str = "", *, thinking: str = "", tool_calls: Any = None, **extra: Any) -> bytes:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    return line(
        {"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00Z", "message": msg, "done": False, **extra}
    )


def chat_done(reason: str = "stop", prompt: int = 12, completion: int = 5) -> bytes:
    return line(
        {
            "model": "llama3.2:3b",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": reason,
            "total_duration": 123,
            "prompt_eval_count": prompt,
            "eval_count": completion,
        }
    )


def gen_line(text: str, **extra: Any) -> bytes:
    return line({"model": "m", "response": text, "done": False, **extra})


def gen_done(reason: str = "stop", prompt: int = 3, completion: int = 2) -> bytes:
    return line(
        {
            "model": "m",
            "response": "",
            "done": True,
            "done_reason": reason,
            "prompt_eval_count": prompt,
            "eval_count": completion,
        }
    )


def chat_stream(include_usage: bool = False) -> ChatStreamTranslator:
    return ChatStreamTranslator(request_id=RID, model=MODEL, created=CREATED, include_usage=include_usage)


def completion_stream(include_usage: bool = False) -> CompletionStreamTranslator:
    return CompletionStreamTranslator(
        request_id=RID, model=MODEL, created=CREATED, include_usage=include_usage
    )


def run(translator: ChatStreamTranslator | CompletionStreamTranslator, lines: list[bytes]) -> bytes:
    out = b"".join(translator.feed(raw) for raw in lines)
    return out + translator.finish()


def events(sse: bytes) -> list[Any]:
    """Parse SSE by hand: every event is exactly one 'data: ...' line followed by a blank line."""
    assert sse.endswith(b"\n\n")
    parsed: list[Any] = []
    for block in sse.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        assert b"\n" not in block
        payload = block[len(b"data: ") :]
        parsed.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return parsed


def deltas(chunks: list[Any]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if isinstance(c, dict) and c.get("choices")]


OLLAMA_CALLS = [
    {"id": "call_up1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
    {"function": {"index": 1, "name": "get_time", "arguments": {"tz": "Europe/Oslo", "fmt": 24}}},
]


# -- finish_reason ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done_reason", "tools", "expected"),
    [
        ("stop", False, "stop"),
        ("length", False, "length"),
        ("load", False, "stop"),
        ("unload", False, "stop"),
        (None, False, "stop"),
        ("stop", True, "tool_calls"),
        ("length", True, "tool_calls"),
    ],
)
def test_finish_reason(done_reason: str | None, tools: bool, expected: str) -> None:
    assert finish_reason(done_reason, tools) == expected


# -- non-streamed chat --------------------------------------------------------------------------


def test_chat_response_text_thinking_usage() -> None:
    data = {
        "model": "llama3.2:3b",
        "message": {"role": "assistant", "content": "Hello!", "thinking": "greet back"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 10,
        "eval_count": 3,
    }
    assert chat_response(data, request_id=RID, model=MODEL, created=CREATED) == {
        "id": RID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "reasoning_content": "greet back"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


def test_chat_response_tool_calls_have_string_arguments_and_null_content() -> None:
    data = {
        "message": {"role": "assistant", "content": "", "tool_calls": OLLAMA_CALLS},
        "done_reason": "stop",
    }
    out = chat_response(data, request_id=RID, model=MODEL, created=CREATED)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    first, second = choice["message"]["tool_calls"]
    assert first == {
        "id": "call_up1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert second["id"].startswith("call_") and len(second["id"]) == len("call_") + 24
    assert orjson.loads(second["function"]["arguments"]) == {"tz": "Europe/Oslo", "fmt": 24}
    assert "index" not in first


def test_chat_response_keeps_string_arguments_and_text_next_to_tool_calls() -> None:
    calls = [{"function": {"name": "f", "arguments": '{"a": 1}'}}]
    data = {"message": {"role": "assistant", "content": "calling f", "tool_calls": calls}}
    message = chat_response(data, request_id=RID, model=MODEL, created=CREATED)["choices"][0]["message"]
    assert message["content"] == "calling f"
    assert message["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'


def test_chat_response_missing_counts_and_length() -> None:
    data = {"message": {"role": "assistant", "content": "abc"}, "done_reason": "length"}
    out = chat_response(data, request_id=RID, model=MODEL, created=CREATED)
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert out["choices"][0]["finish_reason"] == "length"
    assert "reasoning_content" not in out["choices"][0]["message"]


def test_chat_response_logprobs_in_openai_shape() -> None:
    data = {
        "message": {"role": "assistant", "content": "Hi"},
        "logprobs": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "top_logprobs": [{"token": "Hi", "logprob": -0.1}, {"token": "Yo", "logprob": -2.5}],
            }
        ],
    }
    logprobs = chat_response(data, request_id=RID, model=MODEL, created=CREATED)["choices"][0]["logprobs"]
    assert logprobs == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Yo", "logprob": -2.5, "bytes": [89, 111]},
                ],
            }
        ],
        "refusal": None,
    }


# -- non-streamed completion and embeddings -----------------------------------------------------


def test_completion_response() -> None:
    data = {
        "response": "world",
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 4,
        "eval_count": 1,
    }
    assert completion_response(data, request_id=RID, model=MODEL, created=CREATED) == {
        "id": RID,
        "object": "text_completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"text": "world", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
    }


def test_completion_response_legacy_logprobs() -> None:
    data = {
        "response": "ab",
        "logprobs": [
            {"token": "a", "logprob": -0.5, "top_logprobs": [{"token": "a", "logprob": -0.5}]},
            {"token": "b", "logprob": -1.0, "top_logprobs": [{"token": "b", "logprob": -1.0}]},
        ],
    }
    lp = completion_response(data, request_id=RID, model=MODEL, created=CREATED)["choices"][0]["logprobs"]
    assert lp == {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"a": -0.5}, {"b": -1.0}],
        "text_offset": [0, 1],
    }


EMBED: dict[str, Any] = {
    "model": "nomic",
    "embeddings": [[0.5, -1.25, 3.0], [0.1, 0.2, 0.3]],
    "prompt_eval_count": 7,
}


def test_embedding_response_floats() -> None:
    for fmt in (None, "float"):
        assert embedding_response(EMBED, model="emb", encoding_format=fmt) == {
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]},
                {"object": "embedding", "index": 1, "embedding": [0.1, 0.2, 0.3]},
            ],
            "model": "emb",
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        }


def test_embedding_response_base64_is_little_endian_float32() -> None:
    out = embedding_response(EMBED, model="emb", encoding_format="base64")
    for item, expected in zip(out["data"], EMBED["embeddings"], strict=True):
        raw = base64.b64decode(item["embedding"])
        assert len(raw) == 4 * len(expected)
        decoded = struct.unpack(f"<{len(expected)}f", raw)
        assert decoded == pytest.approx(expected, rel=1e-6)
    assert out["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_embedding_response_missing_count_and_bad_format() -> None:
    out = embedding_response({"embeddings": [[1.0]]}, model="emb", encoding_format=None)
    assert out["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    with pytest.raises(InvalidRequest):
        embedding_response(EMBED, model="emb", encoding_format="int8")


# -- chat streaming -----------------------------------------------------------------------------


def test_chat_stream_basic_shape_stable_id_and_done() -> None:
    tr = chat_stream()
    out = run(tr, [chat_line("Hel"), chat_line("lo"), chat_done()])
    parsed = events(out)
    assert parsed[-1] == "[DONE]"
    chunks = parsed[:-1]
    assert {c["id"] for c in chunks} == {RID}
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert c["created"] == CREATED and c["model"] == MODEL
        assert "usage" not in c
        assert c["choices"][0]["index"] == 0 and c["choices"][0]["logprobs"] is None
    assert deltas(chunks) == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert tr.done
    assert tr.usage == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert tr.finish() == b""


def test_chat_stream_usage_is_none_until_done() -> None:
    tr = chat_stream()
    tr.feed(chat_line("x"))
    assert tr.usage is None and not tr.done


def test_chat_stream_empty_first_line_still_sends_role_and_skips_empty_deltas() -> None:
    lines = [chat_line(""), chat_line(""), chat_line("A"), chat_line(""), chat_line("B"), chat_done()]
    got = deltas(events(run(chat_stream(), lines))[:-1])
    assert got == [{"role": "assistant", "content": ""}, {"content": "A"}, {"content": "B"}, {}]


def test_chat_stream_done_only_gives_role_then_finish() -> None:
    chunks = events(run(chat_stream(), [chat_done()]))
    assert deltas(chunks[:-1]) == [{"role": "assistant", "content": ""}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_chat_stream_thinking_across_many_chunks_is_all_preserved() -> None:
    pieces = ["The", " user", " asks", ":", " describe", " a", " rabbit", "."]
    lines = [chat_line(thinking=p) for p in pieces] + [chat_line("Fluffy"), chat_line(" hopper"), chat_done()]
    got = deltas(events(run(chat_stream(), lines))[:-1])
    assert "".join(d.get("reasoning_content", "") for d in got) == "".join(pieces)
    assert "".join(d.get("content", "") for d in got) == "Fluffy hopper"
    assert sum("reasoning_content" in d for d in got) == len(pieces)


def test_chat_stream_parallel_tool_calls_get_running_indexes() -> None:
    later = [{"function": {"index": 0, "name": "third", "arguments": {}}}]
    lines = [chat_line(tool_calls=OLLAMA_CALLS), chat_line(tool_calls=later), chat_done()]
    chunks = events(run(chat_stream(), lines))[:-1]
    calls = [tc for d in deltas(chunks) for tc in d.get("tool_calls", [])]
    assert [tc["index"] for tc in calls] == [0, 1, 2]
    assert [tc["function"]["name"] for tc in calls] == ["get_weather", "get_time", "third"]
    assert calls[0]["id"] == "call_up1"
    assert calls[1]["id"].startswith("call_") and calls[2]["id"].startswith("call_")
    assert len({tc["id"] for tc in calls}) == 3
    assert all(tc["type"] == "function" for tc in calls)
    assert [orjson.loads(tc["function"]["arguments"]) for tc in calls] == [
        {"city": "Paris"},
        {"tz": "Europe/Oslo", "fmt": 24},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_stream_include_usage() -> None:
    tr = chat_stream(include_usage=True)
    parsed = events(run(tr, [chat_line("hi"), chat_done(prompt=8, completion=2)]))
    assert parsed[-1] == "[DONE]"
    *content, finish, usage = parsed[:-1]
    for c in [*content, finish]:
        assert "usage" in c and c["usage"] is None
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage == {
        "id": RID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
    }


def test_chat_stream_length_finish() -> None:
    chunks = events(run(chat_stream(), [chat_line("abc"), chat_done(reason="length")]))
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_chat_stream_logprobs_per_chunk() -> None:
    lines = [chat_line("Hi", logprobs=[{"token": "Hi", "logprob": -0.2}]), chat_done()]
    chunks = events(run(chat_stream(), lines))
    assert chunks[0]["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.2


def test_chat_stream_mid_stream_error_ends_without_done() -> None:
    tr = chat_stream()
    out = tr.feed(chat_line("partial"))
    err = tr.feed(line({"error": "model runner has unexpectedly stopped"}))
    assert tr.done
    assert events(err) == [
        {
            "error": {
                "message": "Upstream reported an error mid-stream: model runner has unexpectedly stopped",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_error",
            }
        }
    ]
    assert tr.feed(chat_line("more")) == b""
    assert tr.feed(chat_done()) == b""
    assert tr.finish() == b""
    assert tr.error("again") == b""
    assert b"[DONE]" not in out + err
    assert tr.usage is None


def test_chat_stream_invalid_json_line_is_an_error_not_dropped() -> None:
    tr = chat_stream()
    tr.feed(chat_line("ok"))
    (event,) = events(tr.feed(b'{"message": {"content": "brok\n'))
    assert event["error"]["type"] == "upstream_error"
    assert "not valid JSON" in event["error"]["message"]
    assert "brok" in event["error"]["message"]
    assert tr.done


def test_chat_stream_non_object_json_line_is_an_error() -> None:
    tr = chat_stream()
    (event,) = events(tr.feed(b"[1, 2]\n"))
    assert "not a JSON object" in event["error"]["message"]


def test_chat_stream_blank_lines_are_ignored() -> None:
    tr = chat_stream()
    assert tr.feed(b"\n") == b""
    assert tr.feed(b"   \r\n") == b""
    assert not tr.done


def test_chat_stream_lines_after_done_are_ignored() -> None:
    tr = chat_stream()
    run(tr, [chat_line("a"), chat_done()])
    assert tr.feed(chat_line("late")) == b""
    assert tr.feed(line({"error": "late"})) == b""


def test_chat_stream_eof_before_done_reports_incomplete() -> None:
    tr = chat_stream()
    tr.feed(chat_line("half an ans"))
    (event,) = events(tr.finish())
    assert event["error"]["code"] == "upstream_stream_interrupted"
    assert tr.done and tr.finish() == b""


def test_explicit_error_call_uses_given_code() -> None:
    tr = chat_stream()
    (event,) = events(tr.error("Upstream 'x' timed out mid-stream.", "upstream_timeout"))
    assert event == {
        "error": {
            "message": "Upstream 'x' timed out mid-stream.",
            "type": "upstream_error",
            "param": None,
            "code": "upstream_timeout",
        }
    }
    assert tr.done


# -- completion streaming -----------------------------------------------------------------------


def test_completion_stream() -> None:
    tr = completion_stream(include_usage=True)
    parsed = events(
        run(tr, [gen_line("Hello"), gen_line(""), gen_line(", world"), gen_done(reason="length")])
    )
    assert parsed[-1] == "[DONE]"
    *texts, finish, usage = parsed[:-1]
    assert {c["id"] for c in parsed[:-1]} == {RID}
    assert all(c["object"] == "text_completion" for c in parsed[:-1])
    assert [c["choices"][0]["text"] for c in texts] == ["Hello", ", world"]
    assert all(c["usage"] is None for c in [*texts, finish])
    assert finish["choices"] == [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}]
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }
    assert tr.usage == usage["usage"]


def test_completion_stream_error_and_logprob_offsets() -> None:
    tr = completion_stream()
    first = events(tr.feed(gen_line("ab", logprobs=[{"token": "ab", "logprob": -1.0}])))[0]
    second = events(tr.feed(gen_line("c", logprobs=[{"token": "c", "logprob": -0.5}])))[0]
    assert first["choices"][0]["logprobs"]["text_offset"] == [0]
    assert second["choices"][0]["logprobs"]["text_offset"] == [2]
    (event,) = events(tr.feed(line({"error": {"message": "out of memory"}})))
    assert event["error"]["message"].endswith("out of memory")
    assert tr.done and tr.finish() == b""


# -- through the official openai client ---------------------------------------------------------


def client_for(handler: Callable[[httpx2.Request], httpx2.Response], *, strict: bool = True) -> openai.OpenAI:
    """The official client over a mock transport. ``strict`` validates every body against the
    client's pydantic types; two of those are stricter than OpenAI itself (the legacy Completion
    type has a non-null finish_reason, and base64 embeddings are validated before decoding)."""
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://corral.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        _strict_response_validation=strict,
    )


def sse_response(body: bytes) -> Callable[[httpx2.Request], httpx2.Response]:
    return lambda request: httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def json_response(obj: dict[str, Any]) -> Callable[[httpx2.Request], httpx2.Response]:
    return lambda request: httpx2.Response(
        200, headers={"content-type": "application/json"}, content=orjson.dumps(obj)
    )


def test_openai_client_parses_our_chat_stream() -> None:
    lines = [
        chat_line(thinking="let me"),
        chat_line(thinking=" think"),
        chat_line("Sure"),
        chat_line(tool_calls=OLLAMA_CALLS),
        chat_done(prompt=20, completion=9),
    ]
    client = client_for(sse_response(run(chat_stream(include_usage=True), lines)))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.id for c in chunks} == {RID}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert text == "Sure" and reasoning == "let me think"
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name if tc.function else None) for tc in calls] == [
        (0, "get_weather"),
        (1, "get_time"),
    ]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 29


def test_openai_client_raises_on_in_band_error() -> None:
    tr = chat_stream()
    body = tr.feed(chat_line("partial")) + tr.feed(line({"error": "boom"})) + tr.finish()
    client = client_for(sse_response(body))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert got == ["partial"]
    assert "boom" in info.value.message


def test_openai_client_parses_our_completion_stream() -> None:
    body = run(completion_stream(), [gen_line("a"), gen_line("b"), gen_done()])
    client = client_for(sse_response(body), strict=False)
    chunks = list(client.completions.create(model=MODEL, prompt="p", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "ab"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_client_parses_non_streamed_chat_with_tool_calls() -> None:
    data = {
        "message": {"role": "assistant", "content": "", "tool_calls": OLLAMA_CALLS},
        "prompt_eval_count": 5,
        "eval_count": 4,
        "done_reason": "stop",
    }
    client = client_for(json_response(chat_response(data, request_id=RID, model=MODEL, created=CREATED)))
    out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert out.id == RID and out.choices[0].finish_reason == "tool_calls"
    calls = out.choices[0].message.tool_calls or []
    assert [orjson.loads(c.function.arguments) for c in calls if c.type == "function"] == [
        {"city": "Paris"},
        {"tz": "Europe/Oslo", "fmt": 24},
    ]
    assert out.usage is not None and out.usage.total_tokens == 9


def test_openai_client_parses_completion() -> None:
    data = {"response": "hi", "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}
    client = client_for(
        json_response(completion_response(data, request_id=RID, model=MODEL, created=CREATED))
    )
    out = client.completions.create(model=MODEL, prompt="p")
    assert out.choices[0].text == "hi" and out.object == "text_completion"


def test_openai_client_decodes_base64_embeddings() -> None:
    seen: list[Any] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        encoding = orjson.loads(request.content).get("encoding_format")
        seen.append(encoding)
        body = embedding_response(EMBED, model="emb", encoding_format=encoding)
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=orjson.dumps(body))

    out = client_for(handler, strict=False).embeddings.create(model="emb", input=["a", "b"])
    assert seen == ["base64"]  # the client asks for base64 by default and decodes it itself
    assert [d.embedding for d in out.data] == [pytest.approx(v, rel=1e-6) for v in EMBED["embeddings"]]
    assert out.usage.prompt_tokens == 7
