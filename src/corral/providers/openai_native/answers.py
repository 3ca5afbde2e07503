"""Answer translation, OpenAI API -> Ollama native API.

Owns the mapping of ``chat.completion``, ``text_completion`` and embedding-list bodies onto
``/api/chat``, ``/api/generate``, ``/api/embed`` and legacy ``/api/embeddings`` answers, and the
stream translators ``ChatNDJSON`` / ``GenerateNDJSON`` that turn an upstream SSE stream into
Ollama's NDJSON lines (every line ends in LF).

Decisions:

* ``done_reason`` is ``length`` for ``finish_reason: length`` and ``stop`` for everything else
  (``tool_calls``, ``content_filter``...), as Ollama reports. Missing token counts are 0.
* ``load_duration`` is 0. Streams report the time to the first generated piece as
  ``prompt_eval_duration`` and the rest as ``eval_duration``; a non-streamed answer cannot be
  split, so its ``prompt_eval_duration`` is 0 and ``eval_duration`` the whole time.
* Tool-call arguments the upstream sent as unparseable JSON (or not an object) become ``{}``.
  Stream tool calls are sent once, complete, in one ``done: false`` line when the choice finishes.
* Streams send their final ``done: true`` line at ``data: [DONE]``, or at EOF when the choice had
  finished (some servers omit [DONE]); so usage sent after the finish chunk is included. A stream
  that ends before its choice finished ends with an ``{"error": ...}`` line instead: the answer
  is incomplete and the client must know.
* Either endpoint's shape is understood by the generate translators, whichever
  ``requests.generate_endpoint`` chose.
"""

from __future__ import annotations

import base64
import struct
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from corral.providers.openai_native.stream import SSEDecoder, ToolCallAssembler


def chat_answer(data: dict[str, Any], *, model: str, started_ns: int) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` as the final ``/api/chat`` object."""
    choice = _choice(data)
    msg = choice.get("message")
    msg = msg if isinstance(msg, dict) else {}
    message: dict[str, Any] = {
        "role": "assistant",
        "content": _text(msg.get("content")) or _text(msg.get("refusal")),
    }
    thinking = _thinking(msg)
    if thinking:
        message["thinking"] = thinking
    raw_calls = msg.get("tool_calls")
    calls = [_call(c) for c in raw_calls if isinstance(c, dict)] if isinstance(raw_calls, list) else []
    if calls:
        message["tool_calls"] = _numbered(calls)
    out = {"model": model, "created_at": created_at(), "message": message}
    _add_logprobs(out, choice)
    return _final(out, choice.get("finish_reason"), data.get("usage"), started_ns, None)


def generate_answer(data: dict[str, Any], *, model: str, started_ns: int) -> dict[str, Any]:
    """A non-streamed ``text_completion`` (or ``chat.completion``) as the final ``/api/generate``
    object."""
    choice = _choice(data)
    msg = choice.get("message")
    out: dict[str, Any] = {"model": model, "created_at": created_at()}
    if isinstance(msg, dict):
        out["response"] = _text(msg.get("content")) or _text(msg.get("refusal"))
        thinking = _thinking(msg)
        if thinking:
            out["thinking"] = thinking
    else:
        out["response"] = _text(choice.get("text"))
    _add_logprobs(out, choice)
    return _final(out, choice.get("finish_reason"), data.get("usage"), started_ns, None)


def embed_answer(
    data: dict[str, Any], *, model: str, legacy: bool, started_ns: int | None = None
) -> dict[str, Any]:
    """An OpenAI embedding list as an ``/api/embed`` answer, or with ``legacy`` as a
    ``/api/embeddings`` one (the first vector). Base64 vectors are little-endian float32."""
    items = data.get("data")
    items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
    items.sort(key=lambda item: item.get("index") if isinstance(item.get("index"), int) else 0)
    vectors = [_vector(item.get("embedding")) for item in items]
    if legacy:
        return {"embedding": vectors[0] if vectors else []}
    usage = data.get("usage")
    return {
        "model": model,
        "embeddings": vectors,
        "total_duration": _since(started_ns) if started_ns is not None else 0,
        "load_duration": 0,
        "prompt_eval_count": _count(usage, "prompt_tokens"),
    }


class _NDJSONStream:
    """SSE bytes of an OpenAI stream in, Ollama NDJSON lines out. Subclasses shape the lines."""

    def __init__(self, *, model: str, started_ns: int) -> None:
        self._model = model
        self._started_ns = started_ns
        self._sse = SSEDecoder()
        self._first_ns: int | None = None  # when the first generated piece arrived
        self._reason: Any = None  # the choice's finish_reason, once it came
        self._usage: Any = None
        self._calls = ToolCallAssembler()
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Any bytes of the upstream stream; returns the complete NDJSON lines to write (maybe b"")."""
        if self.done:
            return b""
        return self._events(self._sse.feed(data))

    def finish(self) -> bytes:
        """At upstream EOF: the final ``done: true`` line if it was not sent yet, or an error line
        when the stream ended before its choice finished. b"" once the stream has ended."""
        if self.done:
            return b""
        out = self._events(self._sse.close())
        if not self.done:  # no [DONE]: fine after a finish_reason, an interrupted answer before
            message = "Upstream ended the stream before the answer was finished; it is incomplete."
            out += self._close() if self._reason else self.error(message)
        return out

    def error(self, message: str) -> bytes:
        """Ollama's in-band error line; ends the stream. b"" once the stream has ended."""
        if self.done:
            return b""
        self.done = True
        return _line({"error": message})

    def _events(self, payloads: list[bytes]) -> bytes:
        out = bytearray()
        for payload in payloads:
            if self.done:
                break
            out += self._event(payload)
        return bytes(out)

    def _event(self, payload: bytes) -> bytes:
        payload = payload.strip()
        if not payload:
            return b""
        if payload == b"[DONE]":
            return self._close()
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if b"\n" in payload:  # data lines of separate events with no blank line between
                return self._events(payload.split(b"\n"))
            preview = payload[:200].decode("utf-8", "replace")
            return self.error(f"Upstream sent a stream event that is not valid JSON: {preview!r}")
        if not isinstance(data, dict):
            return self.error(
                f"Upstream sent a stream event that is not a JSON object: {type(data).__name__}"
            )
        if data.get("error"):
            return self.error(_error_message(data["error"]))
        if isinstance(data.get("usage"), dict):
            self._usage = data["usage"]
        choice = _choice(data)
        if not choice:
            return b""
        out = self._piece(choice)
        if choice.get("finish_reason"):
            self._reason = choice["finish_reason"]
            out += self._tool_line()
        if out and self._first_ns is None:
            self._first_ns = time.monotonic_ns()
        return out

    def _close(self) -> bytes:
        out = self._tool_line()
        self.done = True
        head = self._head()
        head.update(self._empty())
        return out + _line(_final(head, self._reason, self._usage, self._started_ns, self._first_ns))

    def _tool_line(self) -> bytes:
        calls = [_call(c) for c in self._calls.take()]
        if not calls:
            return b""
        line = self._head()
        line["message"] = {"role": "assistant", "content": "", "tool_calls": _numbered(calls)}
        line["done"] = False
        return _line(line)

    def _head(self) -> dict[str, Any]:
        return {"model": self._model, "created_at": created_at()}

    def _piece(self, choice: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _empty(self) -> dict[str, Any]:
        raise NotImplementedError


class ChatNDJSON(_NDJSONStream):
    """A ``chat.completion.chunk`` stream as ``/api/chat`` NDJSON lines."""

    def _piece(self, choice: dict[str, Any]) -> bytes:
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        self._calls.feed(delta.get("tool_calls"))
        content, thinking = _text(delta.get("content")) or _text(delta.get("refusal")), _thinking(delta)
        if not content and not thinking:
            return b""
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        line = self._head()
        line["message"] = message
        line["done"] = False
        _add_logprobs(line, choice)
        return _line(line)

    def _empty(self) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": ""}}


class GenerateNDJSON(_NDJSONStream):
    """A ``text_completion`` (or ``chat.completion.chunk``) stream as ``/api/generate`` lines."""

    def _piece(self, choice: dict[str, Any]) -> bytes:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text, thinking = _text(delta.get("content")) or _text(delta.get("refusal")), _thinking(delta)
        else:
            text, thinking = _text(choice.get("text")), ""
        if not text and not thinking:
            return b""
        line = self._head()
        line["response"] = text
        if thinking:
            line["thinking"] = thinking
        line["done"] = False
        _add_logprobs(line, choice)
        return _line(line)

    def _empty(self) -> dict[str, Any]:
        return {"response": ""}


# -- shared helpers -----------------------------------------------------------------------------


def created_at(ns: int | None = None) -> str:
    """An RFC 3339 UTC time as Ollama (Go) writes it: up to nine fraction digits, zeros trimmed."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return stamp + (f".{fraction:09d}".rstrip("0") if fraction else "") + "Z"


def done_reason(finish_reason: Any) -> str:
    """Ollama's ``done_reason`` for an OpenAI ``finish_reason``."""
    return "length" if finish_reason == "length" else "stop"


def _final(
    out: dict[str, Any], reason: Any, usage: Any, started_ns: int, first_ns: int | None
) -> dict[str, Any]:
    """``out`` completed as Ollama's last object: done, done_reason and the metrics."""
    now = time.monotonic_ns()
    out["done_reason"] = done_reason(reason)
    out["done"] = True
    out["total_duration"] = max(0, now - started_ns)
    out["load_duration"] = 0
    out["prompt_eval_count"] = _count(usage, "prompt_tokens")
    first = started_ns if first_ns is None else first_ns
    out["prompt_eval_duration"] = max(0, first - started_ns)
    out["eval_count"] = _count(usage, "completion_tokens")
    out["eval_duration"] = max(0, now - first)
    return out


def _since(started_ns: int) -> int:
    return max(0, time.monotonic_ns() - started_ns)


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def _text(value: Any) -> str:
    if isinstance(value, list):  # content parts, as a few servers send
        return "".join(_text(p.get("text")) for p in value if isinstance(p, dict))
    return value if isinstance(value, str) else ""


def _thinking(msg: dict[str, Any]) -> str:
    return _text(msg.get("reasoning_content")) or _text(msg.get("reasoning"))


def _count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _choice(data: dict[str, Any]) -> dict[str, Any]:
    """Choice 0 (corral asks for one), or {} when the object has none."""
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return {}


def _call(call: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call (arguments as a JSON string) as Ollama's (arguments as an object)."""
    fn = call.get("function")
    fn = fn if isinstance(fn, dict) else {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = orjson.loads(args) if args.strip() else {}
        except orjson.JSONDecodeError:
            args = {}
    out: dict[str, Any] = {"function": {"name": _text(fn.get("name")), "arguments": args}}
    if not isinstance(args, dict):
        out["function"]["arguments"] = {}
    if isinstance(call.get("id"), str) and call["id"]:
        out["id"] = call["id"]
    return out


def _numbered(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, call in enumerate(calls):
        call["function"] = {"index": i, **call["function"]}
    return calls


def _vector(raw: Any) -> list[float]:
    if isinstance(raw, str):
        packed = base64.b64decode(raw)
        return list(struct.unpack(f"<{len(packed) // 4}f", packed[: len(packed) // 4 * 4]))
    return [float(v) for v in raw] if isinstance(raw, list) else []


def _logprobs(raw: Any) -> list[dict[str, Any]]:
    """OpenAI logprobs (chat ``content`` list or the legacy parallel lists) in Ollama's shape."""
    if not isinstance(raw, dict):
        return []
    if isinstance(raw.get("content"), list):
        return [_token(e, e.get("top_logprobs")) for e in raw["content"] if isinstance(e, dict)]
    tokens, values, tops = raw.get("tokens"), raw.get("token_logprobs"), raw.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return []
    out = []
    for k, (token, value) in enumerate(zip(tokens, values, strict=False)):
        top = tops[k] if isinstance(tops, list) and k < len(tops) and isinstance(tops[k], dict) else {}
        alternatives = [{"token": t, "logprob": v} for t, v in top.items()]
        out.append(_token({"token": token, "logprob": value}, alternatives))
    return out


def _add_logprobs(out: dict[str, Any], choice: dict[str, Any]) -> None:
    logprobs = _logprobs(choice.get("logprobs"))
    if logprobs:
        out["logprobs"] = logprobs


def _token(entry: dict[str, Any], top: Any) -> dict[str, Any]:
    value = entry.get("logprob")
    out: dict[str, Any] = {
        "token": _text(entry.get("token")),
        "logprob": value if isinstance(value, int | float) else 0.0,
    }
    if isinstance(entry.get("bytes"), list):
        out["bytes"] = entry["bytes"]
    if isinstance(top, list) and top:
        out["top_logprobs"] = [_token(t, None) for t in top if isinstance(t, dict)]
    return out


def _error_message(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        value = value["message"]
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return f"Upstream reported an error mid-stream: {text or 'no details given'}"
