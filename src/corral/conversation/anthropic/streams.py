"""Anthropic Messages streams and the model: ``MessagesWriter`` turns the model's events into the
named SSE events a Messages client reads; ``MessagesReader`` turns a Messages upstream's events
into the model's.

Writing: ``message_start`` (and a ``ping``) before anything else; then one content block at a
time, each ``content_block_start``, its deltas, ``content_block_stop``: the reasoning as a
``thinking`` block (closed with corral's ``signature_delta``), the text as a ``text`` block,
each tool call as a ``tool_use`` block whose ``input_json_delta``s carry the arguments' JSON as it
comes. Blocks cannot interleave, so a call whose fragments arrive while another block is open is
held and sent whole when that one is done. ``message_delta`` (stop reason, usage) and
``message_stop`` only after a ``Finish``; after a ``Failure`` an ``error`` event is the last.
The hot path, more text for the open text block, is one ``orjson.dumps`` of the text between
bytes prepared when the block opened.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Delta, Event, Failure, Finish, ToolCallDelta, Usage
from corral.conversation.anthropic.answers import (
    finish_of,
    read_usage,
    signature,
    stop_reason,
    tool_id,
    usage_dict,
)
from corral.conversation.openai.streams import SSEDecoder


def estimated(pieces: int, chars: int, given: Usage | None = None) -> Usage:
    """Output tokens counted from the stream (a piece a token, at least 4 characters a token),
    for an upstream that gave none or 0 (llama.cpp's server ignores ``include_usage``)."""
    prompt = given.prompt_tokens if given is not None else 0
    return Usage(prompt, max(pieces, -(-chars // 4)), estimated=True)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_event(message: str, error_type: str = "api_error") -> bytes:
    return sse("error", {"type": "error", "error": {"type": error_type, "message": message}})


class _Call:
    __slots__ = ("arguments", "block", "id", "name")

    def __init__(self, fragment: ToolCallDelta) -> None:
        self.id = fragment.id or tool_id()
        self.name = fragment.name
        self.arguments = ""
        self.block: int | None = None  # its content block, once started


_TEXT_TAIL = b"}}\n\n"


class MessagesWriter:
    """The model's events in, a Messages client's SSE events out."""

    __slots__ = (
        *("_calls", "_chars", "_next", "_omit", "_open", "_pieces", "_started", "_text_head", "_thought"),
        *("done", "message_id", "model"),
    )

    def __init__(self, *, model: str, message_id: str, omit_thinking: bool) -> None:
        self.model = model
        self.message_id = message_id
        self._omit = omit_thinking
        self._started = False
        self._next = 0  # the index of the next content block
        self._open: tuple[str, int] | None = None  # (kind, index) of the open block
        self._thought = ""  # the thinking block's text, for its signature
        self._calls: dict[int, _Call] = {}  # by the model's tool call index
        self._pieces = 0  # generated pieces and their characters, for usage the upstream did not give
        self._chars = 0
        self._text_head: bytes | None = None  # an open text block's delta event, up to its text
        self.done = False

    def write(self, event: Event) -> bytes:
        head = self._text_head
        if head is not None and type(event) is Delta and not (event.reasoning or event.tool_calls):
            text = event.text  # the hot path: more text for the open text block
            if text:
                self._pieces += 1
                self._chars += len(text)
                return head + orjson.dumps(text) + _TEXT_TAIL
            return b""
        if self.done:
            return b""
        out = b"" if self._started else self._start()
        if isinstance(event, Delta):
            return out + self._delta(event)
        self.done = True
        self._text_head = None  # nothing more is written
        if isinstance(event, Failure):
            return out + error_event(event.message)
        return out + self._finish(event)

    def _start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse("message_start", {"type": "message_start", "message": message}) + sse(
            "ping", {"type": "ping"}
        )

    def _delta(self, event: Delta) -> bytes:
        out = b""
        if event.text or event.reasoning:
            self._pieces += 1
            self._chars += len(event.text) + len(event.reasoning)
        if event.reasoning:
            out += self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            self._thought += event.reasoning
            if not self._omit:
                out += self._block_delta({"type": "thinking_delta", "thinking": event.reasoning})
        if event.text:
            out += self._ensure("text", {"type": "text", "text": ""})
            out += self._block_delta({"type": "text_delta", "text": event.text})
        for fragment in event.tool_calls or ():
            out += self._fragment(fragment)
        return out

    def _fragment(self, fragment: ToolCallDelta) -> bytes:
        call = self._calls.get(fragment.index)
        out = b""
        if call is None:
            call = self._calls[fragment.index] = _Call(fragment)
            if self._open is None or self._open[0] != "tool":
                out += self._begin_call(call)
        call.arguments += fragment.arguments
        if call.block is not None and self._open == ("tool", call.block) and fragment.arguments:
            out += self._block_delta({"type": "input_json_delta", "partial_json": fragment.arguments})
        return out

    def _begin_call(self, call: _Call) -> bytes:
        out = self._close()
        call.block = self._next
        head = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        out += self._open_block("tool", head)
        if call.arguments:  # what arrived while another block was open
            out += self._block_delta({"type": "input_json_delta", "partial_json": call.arguments})
        return out

    def _ensure(self, kind: str, head: dict[str, Any]) -> bytes:
        if self._open is not None and self._open[0] == kind:
            return b""
        return self._close() + self._open_block(kind, head)

    def _open_block(self, kind: str, head: dict[str, Any]) -> bytes:
        self._open = (kind, self._next)
        if kind == "text":
            self._text_head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                + str(self._next).encode()
                + b',"delta":{"type":"text_delta","text":'
            )
        self._next += 1
        data = {"type": "content_block_start", "index": self._open[1], "content_block": head}
        return sse("content_block_start", data)

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        assert self._open is not None
        return sse(
            "content_block_delta", {"type": "content_block_delta", "index": self._open[1], "delta": delta}
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        out = b""
        if self._open[0] == "thinking":
            out += self._block_delta(
                {"type": "signature_delta", "signature": signature("" if self._omit else self._thought)}
            )
        out += sse("content_block_stop", {"type": "content_block_stop", "index": self._open[1]})
        self._open = None
        self._text_head = None
        return out

    def _usage(self, event: Finish) -> Usage:
        usage = event.usage
        if usage is None or (usage.completion_tokens == 0 and self._pieces):
            return estimated(self._pieces, self._chars, usage)
        return usage

    def _finish(self, event: Finish) -> bytes:
        out = self._close()
        for call in self._calls.values():
            if call.block is None:
                out += self._begin_call(call) + self._close()
        reason = stop_reason(event.reason, bool(self._calls))
        delta = {"stop_reason": reason, "stop_sequence": None}
        out += sse(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": usage_dict(self._usage(event))},
        )
        return out + sse("message_stop", {"type": "message_stop"})


class MessagesReader:
    """A Messages upstream's SSE bytes in, the model's events out."""

    __slots__ = ("_blocks", "_decoder", "_input", "_output", "_reason", "_tools", "done", "usage")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._blocks: dict[int, int] = {}  # content block index -> tool call index
        self._tools = 0
        self._input = 0
        self._output = 0
        self._reason: str | None = None
        self.usage: Usage | None = None
        self.done = False

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            if not self.done:
                self._event(payload, events)
        return events

    def end(self) -> list[Event]:
        events: list[Event] = []
        for payload in self._decoder.close():
            if not self.done:
                self._event(payload, events)
        if not self.done:
            self.done = True
            events.append(Failure("Upstream ended the stream before message_stop; the answer is incomplete."))
        return events

    def _event(self, payload: bytes, events: list[Event]) -> None:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.done = True
            events.append(Failure("Upstream sent an event that is not JSON.", "upstream_bad_response"))
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            usage = read_usage((data.get("message") or {}).get("usage"))
            self._input = usage.prompt_tokens if usage else 0
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                self._blocks[data.get("index", -1)] = self._tools
                events.append(
                    Delta(
                        tool_calls=[ToolCallDelta(self._tools, block.get("id"), str(block.get("name") or ""))]
                    )
                )
                self._tools += 1
        elif kind == "content_block_delta":
            self._piece(data, events)
        elif kind == "message_delta":
            self._reason = (data.get("delta") or {}).get("stop_reason") or self._reason
            counts = data.get("usage")
            if isinstance(counts, dict):
                output = counts.get("output_tokens")
                if isinstance(output, int):
                    self._output = output
                if isinstance(counts.get("input_tokens"), int):
                    self._input = max(self._input, counts["input_tokens"])
        elif kind == "message_stop":
            self.done = True
            self.usage = Usage(self._input, self._output)
            reason = finish_of(self._reason) or ("tool_calls" if self._tools else "stop")
            events.append(Finish(reason, self.usage))
        elif kind == "error":
            self.done = True
            error = data.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else None
            events.append(
                Failure(
                    f"Upstream reported an error mid-stream: {message or 'no details given'}",
                    "upstream_error",
                )
            )

    def _piece(self, data: dict[str, Any], events: list[Event]) -> None:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            events.append(Delta(text=str(delta.get("text") or "")))
        elif kind == "thinking_delta":
            events.append(Delta(reasoning=str(delta.get("thinking") or "")))
        elif kind == "input_json_delta":
            tool = self._blocks.get(data.get("index", -1))
            if tool is not None:
                piece = str(delta.get("partial_json") or "")
                if piece:
                    events.append(Delta(tool_calls=[ToolCallDelta(tool, arguments=piece)]))
