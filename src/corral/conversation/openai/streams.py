"""OpenAI streams and the model: ``SSEWriter`` turns the model's stream events into the
server-sent events an OpenAI client reads (``chat.completion.chunk`` or ``text_completion``);
``SSEReader`` turns an OpenAI-compatible upstream's stream into the model's events.

Writing: one stable id on every chunk, the role in the first, a running tool-call index (calls
of separate chunks never share one), every thinking delta kept (``reasoning_content``), finish
reason ``tool_calls`` when the answer called tools, the usage chunk when the client asked for it
(``"usage": null`` on every other chunk then, as OpenAI does), and ``data: [DONE]`` only after a
``Finish``: a ``Failure`` is an in-band error event, the form OpenAI clients raise on.

Reading follows the SSE rules OpenAI-compatible servers rely on (``SSEDecoder``), takes choice 0,
and holds the answer's end until the body has ended: ``[DONE]`` (or a finish reason without one)
is a ``Finish`` only at ``end()``, the clean end of the body; a connection that breaks after it
is the caller's ``Failure``, and a body that ends without a finish reason is a ``Failure`` too.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Final

import orjson

from corral.conversation.answer import (
    Delta,
    Event,
    Failure,
    Finish,
    FinishReason,
    ToolCallDelta,
    Usage,
    upstream_error_message,
)
from corral.conversation.openai.answers import (
    chat_logprobs,
    completion_logprobs,
    finish_reason,
    first_choice,
    read_logprobs,
    read_usage,
    text,
    thinking,
    usage_dict,
)

DONE: Final = b"data: [DONE]\n\n"
_LINE_END: Final = re.compile(rb"\r\n|\r|\n")


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_event(message: str, code: str = "upstream_error") -> bytes:
    """An in-band error event, the form the OpenAI clients raise on."""
    return sse({"error": {"message": message, "type": "upstream_error", "param": None, "code": code}})


class SSEWriter:
    """The model's events in, an OpenAI client's SSE bytes out (``chat`` chunks or completions)."""

    __slots__ = (
        "_chat",
        "_head",
        "_include_usage",
        "_offset",
        "_prefix",
        "_saw_tool_calls",
        "_seen",
        "_started",
        "_suffix",
        "done",
    )

    def __init__(self, *, chat: bool, request_id: str, model: str, created: int, include_usage: bool) -> None:
        self._chat = chat
        self._head: dict[str, Any] = {
            "id": request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        # Every chunk is the same head and one choice: the head is encoded once, so a chunk costs
        # the encoding of its choice (the bytes are orjson's for the whole object).
        head = orjson.dumps({**self._head, "choices": []})
        self._prefix = b"data: " + head[: -len(b"]}")]
        self._suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        self._saw_tool_calls = False
        self._started = False
        self._seen: set[int] = set()  # tool-call indexes already announced
        self._offset = 0  # characters generated so far, for legacy logprobs text_offset
        self.done = False

    def write(self, event: Event) -> bytes:
        if self.done:
            return b""
        if isinstance(event, Delta):
            return self._delta(event) if self._chat else self._text(event)
        if isinstance(event, Finish):
            return self._finish(event.reason, event.usage)
        return self.error(event.message, event.code)

    def error(self, message: str, code: str = "upstream_error") -> bytes:
        """An in-band error event; ends the stream."""
        if self.done:
            return b""
        self.done = True
        return error_event(message, code)

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return self._prefix + orjson.dumps(choice) + self._suffix

    def _delta(self, d: Delta) -> bytes:
        delta: dict[str, Any] = {} if self._started else {"role": "assistant", "content": ""}
        if d.text:
            delta["content"] = d.text
        if d.reasoning:
            delta["reasoning_content"] = d.reasoning
        if d.tool_calls:
            delta["tool_calls"] = [self._call(c) for c in d.tool_calls]
            self._saw_tool_calls = True
        logprobs = None if d.logprobs is None else chat_logprobs(d.logprobs)
        if self._started and not delta and logprobs is None:
            return b""
        self._started = True
        return self._chunk({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None})

    def _call(self, c: ToolCallDelta) -> dict[str, Any]:
        if c.index in self._seen:  # a later piece of a call already announced: its arguments
            return {"index": c.index, "function": {"arguments": c.arguments}}
        self._seen.add(c.index)
        call_id = c.id or f"call_{secrets.token_hex(12)}"
        return {
            "index": c.index,
            "id": call_id,
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }

    def _text(self, d: Delta) -> bytes:
        logprobs = completion_logprobs(d.logprobs, self._offset)
        if not d.text and logprobs is None:
            return b""
        self._offset += len(d.text)
        return self._chunk({"text": d.text, "index": 0, "logprobs": logprobs, "finish_reason": None})

    def _finish(self, reason: FinishReason, usage: Usage | None) -> bytes:
        out = b"" if self._started or not self._chat else self._delta(Delta())
        self.done = True
        why = finish_reason(reason, self._saw_tool_calls)
        if self._chat:
            out += self._chunk({"index": 0, "delta": {}, "logprobs": None, "finish_reason": why})
        else:
            out += self._chunk({"text": "", "index": 0, "logprobs": None, "finish_reason": why})
        if self._include_usage:
            out += sse({**self._head, "choices": [], "usage": usage_dict(usage)})
        return out + DONE


class SSEDecoder:
    """Incremental SSE parser: bytes of a ``text/event-stream`` body, split anywhere, in; the
    ``data`` payload of each complete event out. Lines end in LF, CRLF or CR; a blank line ends an
    event; ``data:`` lines (one optional space after the colon) of one event are joined with LF;
    comment lines (``:``) and other fields are ignored. ``close`` at EOF delivers an event still
    missing its blank line."""

    __slots__ = ("_buf", "_data", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for a line end
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._buf and not self._data and chunk.endswith(b"\n\n") and b"\r" not in chunk:
            return self._whole(chunk)  # the usual read: whole events, LF line ends
        self._buf += chunk
        events: list[bytes] = []
        pos = 0
        while True:
            match = _LINE_END.search(self._buf, max(pos, self._scanned))
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(self._buf):
                break  # maybe the first half of CRLF: wait for the next byte
            self._line(bytes(self._buf[pos : match.start()]), events)
            pos = match.end()
            self._scanned = 0
        del self._buf[:pos]
        self._scanned = len(self._buf) - (1 if self._buf.endswith(b"\r") else 0)
        return events

    def _whole(self, chunk: bytes) -> list[bytes]:
        """Whole events, as ``feed`` reads them, without the line-by-line scan: an event of one
        ``data:`` line (as every upstream sends them) is cut out at once, any other goes through
        ``_line`` line by line."""
        events: list[bytes] = []
        for block in chunk.split(b"\n\n"):
            if not block:
                continue
            if b"\n" not in block and block.startswith(b"data:"):
                events.append(block[6:] if block.startswith(b"data: ") else block[5:])
                continue
            for line in block.split(b"\n"):
                self._line(line, events)
            self._line(b"", events)
        return events

    def close(self) -> list[bytes]:
        events: list[bytes] = []
        if self._buf:
            self._line(bytes(self._buf).rstrip(b"\r"), events)
            self._buf.clear()
        self._scanned = 0
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data))
                self._data = []
            return
        if line.startswith(b":"):
            return
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)


class SSEReader:
    """An OpenAI-compatible upstream's SSE bytes in, the model's events out. ``feed`` as bytes
    arrive; ``end`` when the body ended cleanly (which is when the answer's ``Finish`` comes)."""

    __slots__ = ("_decoder", "_reason", "_usage", "done", "saw_done", "usage")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._reason: FinishReason | None = None
        self.usage: Usage | None = None  # the upstream's own counts, once it sent them
        self.saw_done = False  # [DONE] came (held until the body ends)
        self.done = False  # a Finish or Failure was returned: nothing more comes

    @property
    def reason(self) -> FinishReason | None:
        return self._reason

    def feed(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        events: list[Event] = []
        for payload in self._decoder.feed(data):
            self._event(payload, events)
        return events

    def end(self) -> list[Event]:
        """The body ended cleanly: the answer's ``Finish``, or a ``Failure`` if it never finished."""
        if self.done:
            return []
        events: list[Event] = []
        for payload in self._decoder.close():
            self._event(payload, events)
        if events and isinstance(events[-1], Failure):  # the last event failed
            return events
        self.done = True
        if self._reason is not None:
            events.append(Finish(self._reason, self.usage))
        elif self.saw_done:
            events.append(
                Failure("Upstream ended the stream without a finish reason; the answer is incomplete.")
            )
        else:
            events.append(
                Failure("Upstream ended the stream before the answer was finished; it is incomplete.")
            )
        return events

    def _fail(self, message: str, code: str, events: list[Event]) -> None:
        self.done = True
        events.append(Failure(message, code))

    def _event(self, payload: bytes, events: list[Event]) -> None:
        payload = payload.strip()
        if not payload or self.done or self.saw_done:
            return
        if payload == b"[DONE]":
            self.saw_done = True
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if b"\n" in payload:  # data lines of separate events with no blank line between
                for part in payload.split(b"\n"):
                    self._event(part, events)
                return
            preview = payload[:200].decode("utf-8", "replace")
            self._fail(
                f"Upstream sent a stream event that is not valid JSON: {preview!r}",
                "upstream_bad_response",
                events,
            )
            return
        if not isinstance(data, dict):
            self._fail(
                f"Upstream sent a stream event that is not a JSON object: {type(data).__name__}",
                "upstream_bad_response",
                events,
            )
            return
        if data.get("error"):
            self._fail(upstream_error_message(data["error"]), "upstream_error", events)
            return
        usage = read_usage(data.get("usage"))
        if usage is not None:
            self.usage = usage
        choice = first_choice(data)
        if not choice:
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            piece = Delta(text(delta.get("content")) or text(delta.get("refusal")), thinking(delta))
            piece.tool_calls = _fragments(delta.get("tool_calls"))
        else:
            piece = Delta(text(choice.get("text")))
        piece.logprobs = read_logprobs(choice.get("logprobs")) or None
        if piece.text or piece.reasoning or piece.tool_calls or piece.logprobs:
            events.append(piece)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            known = ("stop", "length", "tool_calls", "content_filter")
            self._reason = reason if reason in known else "stop"  # type: ignore[assignment]


def _fragments(raw: Any) -> list[ToolCallDelta] | None:
    """One chunk's ``delta.tool_calls`` as fragments, keyed by ``index`` (a few servers send whole
    calls, or the arguments as an object)."""
    if not isinstance(raw, list) or not raw:
        return None
    out: list[ToolCallDelta] = []
    for k, frag in enumerate(raw):
        if not isinstance(frag, dict):
            continue
        index = frag.get("index")
        fn = frag.get("function")
        fn = fn if isinstance(fn, dict) else {}
        name, args = fn.get("name"), fn.get("arguments")
        if isinstance(args, dict):
            args = orjson.dumps(args).decode()
        call_id = frag.get("id")
        out.append(
            ToolCallDelta(
                index if isinstance(index, int) else k,
                call_id if isinstance(call_id, str) and call_id else None,
                name if isinstance(name, str) else "",
                args if isinstance(args, str) else "",
            )
        )
    return out or None
