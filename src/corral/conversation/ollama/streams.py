"""Ollama streams and the model: ``NDJSONWriter`` turns the model's stream events into the NDJSON
lines an Ollama client reads (``/api/chat`` or ``/api/generate``); ``NDJSONReader`` turns an
Ollama upstream's lines into the model's events.

Writing: one line per piece with text or thinking; tool calls are put back together from their
fragments and sent once, complete, in one ``done: false`` line when the answer finishes; the
last line is the ``done: true`` one (with ``done_reason``, the token counts and the durations)
only after a ``Finish``. After a ``Failure`` the last line is ``{"error": ...}``: the answer is
incomplete and the client must know.

Reading: a line per piece (an empty one too: the first tells an OpenAI client the role), whole
tool calls as one fragment each with a running index, the ``done`` line as the ``Finish`` with
the counts, an ``{"error"}`` line (or one that is not a JSON object) as the ``Failure``; a body
that ends before the ``done`` line is a ``Failure`` (``end``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from corral.conversation.answer import (
    Delta,
    Event,
    Failure,
    Finish,
    ToolCallDelta,
    Usage,
    upstream_error_message,
)
from corral.conversation.ollama.answers import (
    add_logprobs,
    created_at,
    final,
    finish_reason,
    read_calls,
    read_logprobs,
    read_usage,
    text,
    tool_calls,
)
from corral.conversation.request import ToolCall


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def error_line(message: str) -> bytes:
    return orjson.dumps({"error": message}) + b"\n"


class NDJSONWriter:
    """The model's events in, an Ollama client's NDJSON lines out (chat or generate)."""

    __slots__ = ("_calls", "_chat", "_first_ns", "_model", "_started_ns", "done")

    def __init__(self, *, chat: bool, model: str, started_ns: int) -> None:
        self._chat = chat
        self._model = model
        self._started_ns = started_ns
        self._first_ns: int | None = None  # when the first generated piece went out
        self._calls: dict[int, ToolCall] = {}  # tool calls being put together, by index
        self.done = False

    def write(self, event: Event) -> bytes:
        if self.done:
            return b""
        if isinstance(event, Delta):
            return self._piece(event)
        if isinstance(event, Finish):
            return self._finish(event)
        return self.error(event.message)

    def error(self, message: str) -> bytes:
        """Ollama's in-band error line; ends the stream."""
        if self.done:
            return b""
        self.done = True
        return error_line(message)

    def _head(self) -> dict[str, Any]:
        return {"model": self._model, "created_at": created_at()}

    def _piece(self, d: Delta) -> bytes:
        if d.tool_calls and self._chat:
            self._collect(d.tool_calls)
        if not d.text and not d.reasoning:
            return b""
        out = self._head()
        if self._chat:
            message: dict[str, Any] = {"role": "assistant", "content": d.text}
            if d.reasoning:
                message["thinking"] = d.reasoning
            out["message"] = message
        else:
            out["response"] = d.text
            if d.reasoning:
                out["thinking"] = d.reasoning
        out["done"] = False
        add_logprobs(out, d.logprobs)
        if self._first_ns is None:
            self._first_ns = time.monotonic_ns()
        return line(out)

    def _collect(self, fragments: list[ToolCallDelta]) -> None:
        """The id is the first one seen, names and argument texts are concatenated."""
        for frag in fragments:
            call = self._calls.get(frag.index)
            if call is None:
                call = self._calls[frag.index] = ToolCall("", "", frag.id, frag.index)
            elif call.id is None:
                call.id = frag.id
            call.name += frag.name
            call.arguments = f"{call.arguments}{frag.arguments}"

    def _finish(self, event: Finish) -> bytes:
        out = b""
        if self._calls:
            calls = [self._calls[k] for k in sorted(self._calls)]
            self._calls = {}
            piece = self._head()
            piece["message"] = {"role": "assistant", "content": "", "tool_calls": tool_calls(calls)}
            piece["done"] = False
            out = line(piece)
        self.done = True
        last = self._head()
        if self._chat:
            last["message"] = {"role": "assistant", "content": ""}
        else:
            last["response"] = ""
        return out + line(final(last, event.reason, event.usage, self._started_ns, self._first_ns))


class NDJSONReader:
    """An Ollama upstream's NDJSON lines in, the model's events out."""

    __slots__ = ("_chat", "_saw_tool_calls", "_tool_index", "done", "usage")

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._tool_index = 0  # running across the stream, so parallel calls never share an index
        self._saw_tool_calls = False
        self.done = False
        self.usage: Usage | None = None

    def feed(self, raw: bytes) -> list[Event]:
        """One line of the upstream's stream."""
        if self.done:
            return []
        raw = raw.strip()
        if not raw:
            return []
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            preview = raw[:200].decode("utf-8", "replace")
            return self._fail(
                f"Upstream sent a stream line that is not valid JSON: {preview!r}", "upstream_bad_response"
            )
        if not isinstance(data, dict):
            return self._fail(
                f"Upstream sent a stream line that is not a JSON object: {type(data).__name__}",
                "upstream_bad_response",
            )
        if data.get("error"):
            return self._fail(upstream_error_message(data["error"]), "upstream_error")
        piece = self._piece(data)
        if data.get("done") is not True:
            return [piece]
        self.done = True
        self.usage = read_usage(data)
        return [piece, Finish(finish_reason(data.get("done_reason"), self._saw_tool_calls), self.usage)]

    def end(self) -> list[Event]:
        """The body ended: nothing more if the answer finished, else a ``Failure``."""
        if self.done:
            return []
        return self._fail(
            "Upstream ended the stream before its final message; the answer is incomplete.",
            "upstream_stream_interrupted",
        )

    def _fail(self, message: str, code: str) -> list[Event]:
        self.done = True
        return [Failure(message, code)]

    def _piece(self, data: dict[str, Any]) -> Delta:
        raw = data.get("logprobs")
        logprobs = (read_logprobs(raw) or None) if raw is not None else None
        if not self._chat:
            return Delta(text(data.get("response")), text(data.get("thinking")), None, logprobs)
        msg = data.get("message")
        if not isinstance(msg, dict):
            return Delta("", "", None, logprobs)
        content, thinking = msg.get("content", ""), msg.get("thinking", "")
        piece = Delta(
            content if isinstance(content, str) else "",
            thinking if isinstance(thinking, str) else "",
            None,
            logprobs,
        )
        if "tool_calls" in msg:
            calls = read_calls(msg["tool_calls"], start=self._tool_index)
            if calls:
                self._tool_index += len(calls)
                self._saw_tool_calls = True
                piece.tool_calls = [ToolCallDelta(c.index, c.id, c.name, c.arguments_json()) for c in calls]
        return piece
