"""Framing of upstream OpenAI streams: server-sent events and streamed tool calls.

Owns ``SSEDecoder``: bytes of a ``text/event-stream`` body, split anywhere, in; the ``data``
payload of each complete event out. Follows the SSE rules OpenAI-compatible servers rely on:
lines end in LF, CRLF or CR; a blank line ends an event; ``data:`` lines (one optional space after
the colon) of one event are joined with LF; comment lines (``:``) and other fields (``event:``,
``id:``, ``retry:``) are ignored. At EOF an event still missing its blank line is delivered too.

Owns ``ToolCallAssembler``: the tool-call fragments of ``delta.tool_calls``, keyed by ``index``,
put back together into whole OpenAI tool calls.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

_LINE_END: Final = re.compile(rb"\r\n|\r|\n")


class SSEDecoder:
    """Incremental SSE parser. ``feed`` as bytes arrive, ``close`` at EOF."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for a line end
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads of the events ``chunk`` completes (maybe none)."""
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

    def close(self) -> list[bytes]:
        """At EOF: the payloads of events the stream left unterminated."""
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
        field, _, value = line.partition(b":")
        if field == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)


class ToolCallAssembler:
    """Streamed tool-call fragments in; whole calls out. OpenAI sends a call's id and name in its
    first fragment and its arguments JSON string in pieces; a few servers send whole calls, or the
    arguments as an object. The id is the first one seen, names and arguments are concatenated."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def feed(self, deltas: Any) -> None:
        """One chunk's ``delta.tool_calls`` (anything else is ignored)."""
        for k, delta in enumerate(deltas if isinstance(deltas, list) else []):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            call = self._calls.setdefault(
                index if isinstance(index, int) else k, {"name": "", "arguments": ""}
            )
            call_id = delta.get("id")
            if isinstance(call_id, str) and call_id and "id" not in call:
                call["id"] = call_id
            fn = delta.get("function")
            fn = fn if isinstance(fn, dict) else {}
            name, args = fn.get("name"), fn.get("arguments")
            if isinstance(name, str):
                call["name"] += name
            if isinstance(args, dict):
                args = orjson.dumps(args).decode()
            if isinstance(args, str):
                call["arguments"] += args

    def take(self) -> list[dict[str, Any]]:
        """The calls assembled so far, in index order, as OpenAI tool calls
        (``{"id"?, "type", "function": {"name", "arguments": <JSON string>}}``); then starts over."""
        calls: list[dict[str, Any]] = []
        for _, call in sorted(self._calls.items()):
            out: dict[str, Any] = {"type": "function"}
            if "id" in call:
                out["id"] = call["id"]
            out["function"] = {"name": call["name"], "arguments": call["arguments"]}
            calls.append(out)
        self._calls = {}
        return calls
