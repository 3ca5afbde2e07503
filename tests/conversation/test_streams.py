"""The model's stream events between the APIs: an answer is complete only when its upstream's
body ended cleanly after a finish reason, and a surface never tells its client otherwise."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.conversation.answer import Delta, Event, Failure, Finish, ToolCallDelta, Usage
from corral.conversation.ollama.streams import NDJSONReader, NDJSONWriter
from corral.conversation.openai.streams import DONE, SSEDecoder, SSEReader, SSEWriter


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return sse(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


ROLE = chunk({"role": "assistant", "content": ""})


def read_all(data: bytes, *, clean_end: bool = True) -> list[Event]:
    reader = SSEReader()
    events = reader.feed(data)
    if clean_end:
        events += reader.end()
    return events


def test_done_without_a_finish_reason_is_a_failure_not_an_answer() -> None:
    """llama-cpp-python, interrupting a generation: the role chunk, then [DONE]."""
    events = read_all(ROLE + DONE)
    assert [type(e) for e in events] == [Failure]
    assert "without a finish reason" in events[0].message  # type: ignore[union-attr]


def test_done_is_held_until_the_body_ends() -> None:
    reader = SSEReader()
    events = reader.feed(chunk({"content": "hi"}) + chunk({}, "stop") + DONE)
    assert events == [Delta("hi")]  # no Finish yet: the connection may still break
    assert reader.saw_done and not reader.done
    assert reader.end() == [Finish("stop", None)]


def test_finish_carries_the_usage_sent_after_the_finish_chunk() -> None:
    usage = sse({"id": "c", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    events = read_all(chunk({"content": "a"}) + chunk({}, "length") + usage + DONE)
    assert events[-1] == Finish("length", Usage(7, 3))


def test_a_finish_reason_without_done_ends_well_at_a_clean_end() -> None:
    assert read_all(chunk({"content": "a"}) + chunk({}, "stop"))[-1] == Finish("stop", None)


def test_a_body_that_ends_mid_answer_is_a_failure() -> None:
    events = read_all(chunk({"content": "hal"}))
    assert events[0] == Delta("hal") and isinstance(events[1], Failure)


def test_tool_call_fragments_keep_their_index() -> None:
    first = {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"x"'}}
    rest = {"index": 1, "function": {"arguments": ": 1}"}}
    events = read_all(chunk({"tool_calls": [first]}) + chunk({"tool_calls": [rest]}, "tool_calls") + DONE)
    assert [e.tool_calls for e in events if isinstance(e, Delta)] == [
        [ToolCallDelta(1, "b", "g", '{"x"')],
        [ToolCallDelta(1, None, "", ": 1}")],
    ]
    assert events[-1] == Finish("tool_calls", None)


def ndjson(events: list[Event], *, chat: bool = True) -> list[dict[str, Any]]:
    writer = NDJSONWriter(chat=chat, model="alias", started_ns=0)
    out = b"".join(writer.write(e) for e in events)
    return [orjson.loads(line) for line in out.splitlines()]


def test_ollama_writer_ends_a_failed_stream_with_an_error_line_never_done() -> None:
    lines = ndjson([Delta("par"), Failure("Upstream 'x' broke the connection mid-stream.")])
    assert lines[0]["message"]["content"] == "par" and lines[0]["done"] is False
    assert lines[-1] == {"error": "Upstream 'x' broke the connection mid-stream."}
    assert not any(line.get("done") is True for line in lines)


def test_ollama_writer_writes_nothing_after_the_end() -> None:
    writer = NDJSONWriter(chat=True, model="alias", started_ns=0)
    writer.write(Failure("gone"))
    assert writer.write(Finish("stop")) == b"" and writer.write(Delta("late")) == b""


def test_ollama_writer_assembles_tool_calls_and_echoes_the_requested_model() -> None:
    events: list[Event] = [
        Delta(tool_calls=[ToolCallDelta(0, "a", "f", '{"x"')]),
        Delta(tool_calls=[ToolCallDelta(0, None, "", ": 1}")]),
        Finish("tool_calls", Usage(5, 2)),
    ]
    calls, last = ndjson(events)
    assert calls["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "f", "arguments": {"x": 1}}, "id": "a"}
    ]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (5, 2)
    assert {calls["model"], last["model"]} == {"alias"}


def sse_events(events: list[Event], *, include_usage: bool = False) -> list[Any]:
    writer = SSEWriter(
        chat=True, request_id="chatcmpl-1", model="alias", created=1, include_usage=include_usage
    )
    out = b"".join(writer.write(e) for e in events)
    return [
        orjson.loads(part[6:]) if part != b"data: [DONE]" else "[DONE]" for part in out.split(b"\n\n") if part
    ]


def test_openai_writer_sends_the_error_event_and_no_done_after_a_failure() -> None:
    got = sse_events([Delta("par"), Failure("Upstream 'x' broke the connection mid-stream.")])
    assert "[DONE]" not in got
    assert got[-1]["error"]["code"] == "upstream_stream_interrupted"


def test_openai_writer_sends_usage_then_done_after_a_finish() -> None:
    got = sse_events([Delta("hi"), Finish("stop", Usage(3, 1))], include_usage=True)
    assert got[-1] == "[DONE]"
    assert got[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert got[-3]["choices"][0]["finish_reason"] == "stop"
    assert {e["model"] for e in got[:-1]} == {"alias"}


def test_an_ollama_stream_cut_before_done_is_a_failure() -> None:
    reader = NDJSONReader(chat=True)
    events = reader.feed(b'{"message": {"role": "assistant", "content": "ha"}, "done": false}')
    events += reader.end()
    assert events[0] == Delta("ha") and isinstance(events[-1], Failure)


def test_an_ollama_done_line_is_the_finish_with_its_counts() -> None:
    reader = NDJSONReader(chat=True)
    line = orjson.dumps(
        {
            "message": {"content": ""},
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 9,
            "eval_count": 4,
        }
    )
    assert reader.feed(line)[-1] == Finish("length", Usage(9, 4))
    assert reader.end() == []


@pytest.mark.parametrize(
    "data",
    [
        b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n',  # what upstreams send
        b"data: a\n\n\ndata: b\n\n",  # an extra blank line
        b": keep-alive\n\ndata: x\ndata: y\n\nevent: e\ndata: z\n\n",  # comments, two data lines, fields
        b"data\n\ndata:nospace\n\nid: 1\n\ndata: \n\n",  # a bare field name, no space, no data, empty data
    ],
)
def test_whole_events_read_at_once_are_read_as_byte_by_byte(data: bytes) -> None:
    # a read of whole events takes the decoder's shortcut; one byte at a time takes the line scan
    at_once = SSEDecoder()
    shortcut = at_once.feed(data) + at_once.close()
    one_by_one = SSEDecoder()
    scanned = [e for i in range(len(data)) for e in one_by_one.feed(data[i : i + 1])] + one_by_one.close()
    assert shortcut == scanned and shortcut
