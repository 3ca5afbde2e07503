"""OpenAI answers for an Ollama client, through the model (the OpenAI reader, the Ollama writer)."""

from __future__ import annotations

import base64
import random
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import ollama
import orjson
import pytest

from corral.conversation.openai.streams import SSEDecoder
from tests.conversation.pairs import (
    ChatNDJSON,
    GenerateNDJSON,
    chat_answer,
    created_at,
    done_reason,
    embed_answer,
    generate_answer,
)

MODEL = "llama3.2"  # the name the client asked for
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
METRICS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def ago(seconds: float) -> int:
    return time.monotonic_ns() - int(seconds * 1e9)


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-name",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        **extra,
    }


def check_final(obj: dict[str, Any], *, prompt: int = 11, completion: int = 7) -> None:
    assert obj["model"] == MODEL
    assert CREATED_AT.match(obj["created_at"])
    assert obj["done"] is True
    assert obj["prompt_eval_count"] == prompt
    assert obj["eval_count"] == completion
    assert obj["load_duration"] == 0
    assert all(isinstance(obj[k], int) and obj[k] >= 0 for k in METRICS)
    assert obj["prompt_eval_duration"] + obj["eval_duration"] <= obj["total_duration"]


# -- non-streamed chat --------------------------------------------------------------------------


def test_chat_answer_shape_and_metrics() -> None:
    out = chat_answer(completion({"content": "Hello!"}), model=MODEL, started_ns=ago(0.25))
    ollama.ChatResponse.model_validate(out)
    check_final(out)
    assert out["message"] == {"role": "assistant", "content": "Hello!"}
    assert out["done_reason"] == "stop"
    assert out["total_duration"] >= 250_000_000
    assert out["eval_duration"] == out["total_duration"]  # a non-streamed answer cannot be split
    assert out["prompt_eval_duration"] == 0


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_chat_answer_thinking(key: str) -> None:
    out = chat_answer(completion({"content": "4", key: "2+2"}), model=MODEL, started_ns=ago(0))
    assert out["message"] == {"role": "assistant", "content": "4", "thinking": "2+2"}


def test_chat_answer_tool_calls_become_argument_objects() -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        {"type": "function", "function": {"name": "broken", "arguments": '{"city": '}},
        {"type": "function", "function": {"name": "listy", "arguments": "[1, 2]"}},
    ]
    out = chat_answer(
        completion({"content": None, "tool_calls": calls}, "tool_calls"), model=MODEL, started_ns=0
    )
    ollama.ChatResponse.model_validate(out)
    assert out["done_reason"] == "stop"
    assert out["message"]["content"] == ""
    assert out["message"]["tool_calls"] == [
        {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {}}},
        {"function": {"index": 2, "name": "broken", "arguments": {}}},
        {"function": {"index": 3, "name": "listy", "arguments": {}}},
    ]


def test_chat_answer_refusal_and_missing_usage_or_choices() -> None:
    data = completion({"content": None, "refusal": "I can't help with that."})
    del data["usage"]
    out = chat_answer(data, model=MODEL, started_ns=0)
    assert out["message"]["content"] == "I can't help with that."
    assert (out["prompt_eval_count"], out["eval_count"]) == (0, 0)
    empty = chat_answer({"choices": []}, model=MODEL, started_ns=0)
    ollama.ChatResponse.model_validate(empty)
    assert empty["message"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "stop"),
        ("content_filter", "stop"),
        (None, "stop"),
    ],
)
def test_done_reason(finish: str | None, reason: str) -> None:
    assert done_reason(finish) == reason
    out = chat_answer(completion({"content": "x"}, finish), model=MODEL, started_ns=0)
    assert out["done_reason"] == reason


def test_chat_answer_logprobs() -> None:
    logprobs = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Yo", "logprob": -2.5},
                ],
            }
        ]
    }
    data = completion({"content": "Hi"})
    data["choices"][0]["logprobs"] = logprobs
    out = chat_answer(data, model=MODEL, started_ns=0)
    ollama.ChatResponse.model_validate(out)
    assert out["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [
                {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                {"token": "Yo", "logprob": -2.5},
            ],
        }
    ]


def test_created_at_is_rfc3339_utc_like_go() -> None:
    assert created_at(1_700_000_000_123_456_000) == "2023-11-14T22:13:20.123456Z"
    assert created_at(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    assert created_at(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert CREATED_AT.match(created_at())


# -- non-streamed generate ----------------------------------------------------------------------


def test_generate_answer_from_text_completion() -> None:
    data = {
        "object": "text_completion",
        "choices": [
            {"index": 0, "text": " blue light scatters", "finish_reason": "length", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3},
    }
    out = generate_answer(data, model=MODEL, started_ns=ago(0.01))
    ollama.GenerateResponse.model_validate(out)
    check_final(out, prompt=4, completion=3)
    assert out["response"] == " blue light scatters"
    assert out["done_reason"] == "length"
    assert "thinking" not in out


def test_generate_answer_from_chat_completion_with_thinking() -> None:
    out = generate_answer(completion({"content": "Rayleigh.", "reasoning": "hmm"}), model=MODEL, started_ns=0)
    ollama.GenerateResponse.model_validate(out)
    check_final(out)
    assert (out["response"], out["thinking"], out["done_reason"]) == ("Rayleigh.", "hmm", "stop")


def test_generate_answer_legacy_logprobs() -> None:
    logprobs = {
        "tokens": [" a", " b"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{" a": -0.5, " c": -2.0}, None],
        "text_offset": [0, 2],
    }
    data = {"choices": [{"index": 0, "text": " a b", "finish_reason": "stop", "logprobs": logprobs}]}
    out = generate_answer(data, model=MODEL, started_ns=0)
    ollama.GenerateResponse.model_validate(out)
    assert out["logprobs"] == [
        {
            "token": " a",
            "logprob": -0.5,
            "top_logprobs": [{"token": " a", "logprob": -0.5}, {"token": " c", "logprob": -2.0}],
        },
        {"token": " b", "logprob": -1.0},
    ]


# -- embeddings ---------------------------------------------------------------------------------


def embeddings(*vectors: Any, tokens: int = 5) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {
        "object": "list",
        "data": data,
        "model": "e",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def test_embed_answer() -> None:
    out = embed_answer(embeddings([0.1, 0.2], [0.3, 0.4]), model=MODEL, legacy=False, started_ns=ago(0.02))
    ollama.EmbedResponse.model_validate(out)
    assert out["model"] == MODEL
    assert out["embeddings"] == [[0.1, 0.2], [0.3, 0.4]]
    assert out["prompt_eval_count"] == 5
    assert out["load_duration"] == 0
    assert out["total_duration"] >= 20_000_000
    assert embed_answer(embeddings([1.0]), model=MODEL, legacy=False)["total_duration"] == 0


def test_embed_answer_orders_by_index_and_decodes_base64() -> None:
    packed = base64.b64encode(struct.pack("<3f", 0.5, -1.25, 2.0)).decode()
    data = embeddings([9.0], packed)
    data["data"].reverse()
    out = embed_answer(data, model=MODEL, legacy=False)
    assert out["embeddings"] == [[9.0], [0.5, -1.25, 2.0]]


def test_legacy_embed_answer_is_the_first_vector() -> None:
    out = embed_answer(embeddings([0.25, 0.5], [1.0, 1.0]), model=MODEL, legacy=True)
    ollama.EmbeddingsResponse.model_validate(out)
    assert out == {"embedding": [0.25, 0.5]}
    assert embed_answer({"data": []}, model=MODEL, legacy=True) == {"embedding": []}


# -- SSE decoding -------------------------------------------------------------------------------


def test_sse_decoder_fields_comments_and_line_endings() -> None:
    stream = (
        b": keep-alive\r\n\r\n"
        b"event: message\nid: 1\nretry: 100\ndata: one\n\n"
        b"data:two\r\n\r\n"
        b"data: three-a\rdata: three-b\r\r"
        b"data\n\n"
        b"data:  four\n\n"
        b"data: tail"
    )
    decoder = SSEDecoder()
    events = decoder.feed(stream)
    assert events == [b"one", b"two", b"three-a\nthree-b", b"", b" four"]
    assert decoder.close() == [b"tail"]
    assert decoder.close() == []


def test_sse_decoder_waits_for_the_second_half_of_crlf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\ndata: y\n\n") == [b"x", b"y"]


# -- streams ------------------------------------------------------------------------------------


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    return sse({"id": "c1", "object": "chat.completion.chunk", "model": "up", "choices": [choice], **extra})


def usage_chunk(prompt: int = 11, completion: int = 7) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return sse({"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage})


DONE = b"data: [DONE]\n\n"
TOOL_STREAM = b"".join(
    [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Need weather."}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather"}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time"}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Pa'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "UTC"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(20, 9),
        DONE,
    ]
)
TEXT_STREAM = b"".join(
    [
        b": ping\n\n",
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning": "Think"}),
        chunk({"content": "Hel"}),
        chunk({"content": ""}),
        b"event: message\n" + chunk({"content": "lo \u00e9\u00e8 \U0001f600"}),
        chunk({"content": "!", "reasoning_content": "done"}),
        chunk({}, "stop"),
        usage_chunk(),
        DONE,
    ]
)


def lines(out: bytes) -> list[dict[str, Any]]:
    assert out == b"" or out.endswith(b"\n")
    return [orjson.loads(line) for line in out.split(b"\n") if line]


def run(
    stream: bytes, pieces: Iterable[bytes] | None = None, cls: type[Any] = ChatNDJSON
) -> list[dict[str, Any]]:
    translator = cls(model=MODEL, started_ns=ago(0.05))
    out = b"".join(translator.feed(p) for p in (pieces if pieces is not None else [stream]))
    out += translator.finish()
    assert translator.done
    assert translator.finish() == b""
    return lines(out)


def chat_lines(stream: bytes) -> list[dict[str, Any]]:
    result = run(stream)
    for obj in result:
        if "error" not in obj:
            ollama.ChatResponse.model_validate(obj)
            assert obj["model"] == MODEL
            assert CREATED_AT.match(obj["created_at"])
    return result


def normalized(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines without the fields that depend on the clock."""
    return [{k: v for k, v in obj.items() if k != "created_at" and k not in METRICS} for obj in result]


def test_chat_stream_text_and_thinking() -> None:
    result = chat_lines(TEXT_STREAM)
    assert [obj["message"] for obj in result[:-1]] == [
        {"role": "assistant", "content": "", "thinking": "Think"},
        {"role": "assistant", "content": "Hel"},
        {"role": "assistant", "content": "lo \u00e9\u00e8 \U0001f600"},
        {"role": "assistant", "content": "!", "thinking": "done"},
    ]
    assert all(obj["done"] is False for obj in result[:-1])
    final = result[-1]
    check_final(final)
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done_reason"] == "stop"
    assert final["total_duration"] >= 50_000_000
    assert final["prompt_eval_duration"] > 0  # time to the first piece


def split_at_random(data: bytes, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 40)
        yield data[pos : pos + step]
        pos += step


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tools"])
def test_stream_output_does_not_depend_on_how_bytes_arrive(stream: bytes) -> None:
    whole = normalized(run(stream))
    assert normalized(run(stream, (stream[i : i + 1] for i in range(len(stream))))) == whole
    for seed in range(25):
        assert normalized(run(stream, split_at_random(stream, seed))) == whole
    for ending in (b"\r\n", b"\r"):
        assert normalized(run(stream.replace(b"\n", ending))) == whole
    assert normalized(run(stream, [b"", stream[:7], b"", stream[7:]])) == whole


def test_stream_split_at_every_byte_boundary() -> None:
    stream = chunk({"content": "a\u00e9"}) + chunk({}, "stop") + usage_chunk() + DONE
    whole = normalized(run(stream))
    for cut in range(len(stream) + 1):
        assert normalized(run(stream, iter([stream[:cut], stream[cut:]]))) == whole


def test_stream_tool_call_fragments_are_assembled_and_sent_once() -> None:
    result = chat_lines(TOOL_STREAM)
    assert [obj["message"] for obj in result] == [
        {"role": "assistant", "content": "", "thinking": "Need weather."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_a",
                    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
                },
                {"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {"tz": "UTC"}}},
            ],
        },
        {"role": "assistant", "content": ""},
    ]
    assert result[1]["done"] is False
    check_final(result[2], prompt=20, completion=9)
    assert result[2]["done_reason"] == "stop"


def test_tool_call_line_comes_with_the_final_line_at_the_bodys_end() -> None:
    translator = ChatNDJSON(model=MODEL, started_ns=ago(0))
    call = {"index": 0, "id": "x", "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert translator.feed(chunk({"tool_calls": [call]})) == b""
    assert translator.feed(chunk({}, "tool_calls")) == b""
    assert translator.feed(DONE) == b""  # held: the connection may still break
    sent = lines(translator.finish())
    assert [obj["done"] for obj in sent] == [False, True]
    assert sent[0]["message"]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert "tool_calls" not in sent[1]["message"]


def test_tool_calls_without_a_finish_reason_are_an_incomplete_answer() -> None:
    stream = chunk({"tool_calls": [{"id": "x", "function": {"name": "f", "arguments": {"a": 1}}}]}) + DONE
    result = chat_lines(stream)
    assert set(result[-1]) == {"error"} and "finish reason" in result[-1]["error"]
    assert not any(obj.get("done") for obj in result)


def test_whole_tool_calls_with_content_and_finish_in_one_chunk() -> None:
    calls = [
        {"index": 0, "id": "x", "type": "function", "function": {"name": "f", "arguments": '{"a": [1]}'}}
    ]
    result = chat_lines(chunk({"content": "Calling f.", "tool_calls": calls}, "tool_calls") + DONE)
    assert [obj["message"].get("content") for obj in result] == ["Calling f.", "", ""]
    assert result[1]["message"]["tool_calls"][0]["function"]["arguments"] == {"a": [1]}
    assert [obj["done"] for obj in result] == [False, False, True]


def test_tool_call_fragments_are_put_together_in_index_order() -> None:
    fragments = [
        [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}],
        [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}}],
        [{"index": 0, "id": "a", "function": {"arguments": ": 1}"}}, "junk"],
    ]
    stream = b"".join(chunk({"tool_calls": f}) for f in fragments) + chunk({}, "tool_calls") + DONE
    calls, final = chat_lines(stream)
    assert calls["message"]["tool_calls"] == [
        {"id": "a", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}},
        {"id": "b", "function": {"index": 1, "name": "g", "arguments": {}}},
    ]
    assert final["done"] is True


def test_usage_after_the_finish_chunk_lands_in_the_final_line() -> None:
    translator = ChatNDJSON(model=MODEL, started_ns=ago(0))
    assert lines(translator.feed(chunk({"content": "hi"})))[0]["message"]["content"] == "hi"
    assert translator.feed(chunk({}, "length")) == b""  # the final line waits for the body's end
    assert not translator.done
    assert translator.feed(usage_chunk(3, 1)) == b""
    assert translator.feed(DONE) == b""
    final = lines(translator.finish())[0]
    check_final(final, prompt=3, completion=1)
    assert final["done_reason"] == "length"
    assert translator.feed(chunk({"content": "late"})) == b""
    assert translator.done


def test_stream_without_done_marker_but_finished_ends_normally_at_eof() -> None:
    result = chat_lines(chunk({"content": "hi"}) + chunk({}, "stop") + usage_chunk(2, 1))
    check_final(result[-1], prompt=2, completion=1)
    assert result[-1]["done_reason"] == "stop"


def test_unterminated_last_event_is_still_read_at_eof() -> None:
    result = chat_lines(chunk({"content": "hi"}) + chunk({}, "stop").rstrip(b"\n"))
    assert [obj["done"] for obj in result] == [False, True]


def test_stream_cut_before_the_finish_ends_with_an_error_line() -> None:
    result = chat_lines(chunk({"content": "hal"}))
    assert result[0]["message"]["content"] == "hal"
    assert set(result[1]) == {"error"}
    assert "incomplete" in result[1]["error"]


def test_an_empty_stream_and_done_alone_are_incomplete_answers() -> None:
    assert "error" in run(b"")[0]
    result = chat_lines(DONE)  # [DONE] without a finish reason: llama-cpp-python, interrupted
    assert len(result) == 1 and set(result[0]) == {"error"}


def test_error_event_becomes_an_error_line_and_ends_the_stream() -> None:
    translator = ChatNDJSON(model=MODEL, started_ns=ago(0))
    out = translator.feed(
        chunk({"content": "par"}) + sse({"error": {"message": "CUDA out of memory", "code": 500}})
    )
    result = lines(out)
    assert result[0]["message"]["content"] == "par"
    assert result[1] == {"error": "Upstream reported an error mid-stream: CUDA out of memory"}
    assert translator.done
    assert translator.feed(chunk({"content": "more"}) + DONE) == b""
    assert translator.finish() == b""
    assert translator.error("again") == b""


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (sse({"error": "plain"}), "plain"),
        (sse({"error": {"type": "x"}}), '{"type":"x"}'),
        (sse(b"{not json"), "not valid JSON"),
        (sse(b"[1, 2]"), "not a JSON object"),
    ],
)
def test_bad_events_end_the_stream_with_an_error(event: bytes, text: str) -> None:
    result = run(event + chunk({"content": "after"}))
    assert len(result) == 1
    assert text in result[0]["error"]


def test_error_method_writes_ollamas_in_band_error() -> None:
    translator = GenerateNDJSON(model=MODEL, started_ns=0)
    assert translator.error('upstream "x" timed out') == b'{"error":"upstream \\"x\\" timed out"}\n'
    assert translator.done
    assert translator.finish() == b""


def test_data_lines_without_blank_separators_are_read_one_by_one() -> None:
    body = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": "a"}}]}) + b"\n"
    body += b"data: " + orjson.dumps(
        {"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]}
    )
    body += b"\n\n" + DONE
    result = chat_lines(body)
    assert [obj["message"]["content"] for obj in result] == ["a", "b", ""]


def test_stream_logprobs_and_other_choices() -> None:
    logprobs = {"content": [{"token": "a", "logprob": -0.2, "top_logprobs": []}]}
    other = {"index": 1, "delta": {"content": "ignored"}, "finish_reason": None}
    stream = (
        sse({"choices": [other, {"index": 0, "delta": {"content": "a"}, "logprobs": logprobs}]})
        + chunk({}, "stop")
        + DONE
    )
    result = chat_lines(stream)
    assert result[0]["message"]["content"] == "a"
    assert result[0]["logprobs"] == [{"token": "a", "logprob": -0.2}]


def test_chat_stream_parsed_by_the_official_ollama_client() -> None:
    """What the ``ollama`` library itself makes of the translated stream."""

    def respond(stream: bytes) -> Callable[[httpx.Request], httpx.Response]:
        def handler(request: httpx.Request) -> httpx.Response:
            translator = ChatNDJSON(model=MODEL, started_ns=ago(0))
            body = b"".join(translator.feed(stream[i : i + 5]) for i in range(0, len(stream), 5))
            body += translator.finish()
            return httpx.Response(200, content=body, headers={"Content-Type": "application/x-ndjson"})

        return handler

    client = ollama.Client(host="http://ollama.test", transport=httpx.MockTransport(respond(TOOL_STREAM)))
    parts = list(client.chat(MODEL, messages=[{"role": "user", "content": "weather?"}], stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "UTC"}),
    ]
    assert parts[-1].done is True
    assert parts[-1].eval_count == 9

    client = ollama.Client(
        host="http://ollama.test", transport=httpx.MockTransport(respond(chunk({"content": "x"})))
    )
    with pytest.raises(ollama.ResponseError, match="incomplete"):
        list(client.chat(MODEL, messages=[{"role": "user", "content": "hi"}], stream=True))


# -- generate streams ---------------------------------------------------------------------------


def text_chunk(text: str, finish: str | None = None) -> bytes:
    return sse(
        {
            "object": "text_completion",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }
    )


def generate_lines(stream: bytes) -> list[dict[str, Any]]:
    result = run(stream, cls=GenerateNDJSON)
    for obj in result:
        if "error" not in obj:
            ollama.GenerateResponse.model_validate(obj)
    return result


def test_generate_stream_from_text_completion_chunks() -> None:
    stream = text_chunk(" The") + text_chunk("") + text_chunk(" sky", "length") + usage_chunk(4, 2) + DONE
    result = generate_lines(stream)
    assert [(obj["response"], obj["done"]) for obj in result] == [
        (" The", False),
        (" sky", False),
        ("", True),
    ]
    check_final(result[-1], prompt=4, completion=2)
    assert result[-1]["done_reason"] == "length"
    assert "message" not in result[-1]


def test_generate_stream_from_chat_chunks_with_thinking() -> None:
    stream = chunk({"role": "assistant"}) + chunk({"reasoning_content": "hm"}) + chunk({"content": "Blue"})
    stream += chunk({}, "stop") + usage_chunk() + DONE
    result = generate_lines(stream)
    assert normalized(result) == [
        {"model": MODEL, "response": "", "thinking": "hm", "done": False},
        {"model": MODEL, "response": "Blue", "done": False},
        {
            "model": MODEL,
            "response": "",
            "done_reason": "stop",
            "done": True,
            "prompt_eval_count": 11,
            "eval_count": 7,
        },
    ]


def test_generate_stream_split_one_byte_at_a_time() -> None:
    stream = text_chunk("h\u00e9") + text_chunk("llo", "stop") + usage_chunk(1, 2) + DONE
    whole = normalized(run(stream, cls=GenerateNDJSON))
    one_by_one = (stream[i : i + 1] for i in range(len(stream)))
    assert normalized(run(stream, one_by_one, cls=GenerateNDJSON)) == whole
    assert [obj["response"] for obj in whole] == ["h\u00e9", "llo", ""]


def test_generate_stream_cut_short_and_legacy_logprobs() -> None:
    logprobs = {"tokens": ["x"], "token_logprobs": [-0.3], "top_logprobs": [{"x": -0.3}], "text_offset": [0]}
    stream = sse({"choices": [{"index": 0, "text": "x", "logprobs": logprobs, "finish_reason": None}]})
    result = generate_lines(stream)
    assert result[0]["logprobs"] == [
        {"token": "x", "logprob": -0.3, "top_logprobs": [{"token": "x", "logprob": -0.3}]}
    ]
    assert "incomplete" in result[1]["error"]
