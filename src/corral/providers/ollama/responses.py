"""Answer translation, Ollama native API -> OpenAI API.

Owns the mapping of ``/api/chat``, ``/api/generate`` and ``/api/embed`` answers onto
``chat.completion``, ``text_completion`` and embedding-list bodies, and the stream translators
that turn Ollama's NDJSON lines into OpenAI server-sent events: one stable id on every chunk,
a running tool-call index, every thinking delta kept, finish_reason ``tool_calls`` when the
model called tools, and upstream failures reported in-band instead of being dropped.
"""

from __future__ import annotations

import base64
import secrets
import struct
from typing import Any, ClassVar

import orjson

from corral.errors import InvalidRequest

_DONE: bytes = b"data: [DONE]\n\n"


def finish_reason(done_reason: str | None, saw_tool_calls: bool) -> str:
    """OpenAI's finish_reason for an Ollama ``done_reason`` ("stop", "length", "load", "unload")."""
    if saw_tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def chat_response(data: dict[str, Any], *, request_id: str, model: str, created: int) -> dict[str, Any]:
    """A non-streamed ``/api/chat`` answer as an OpenAI ``chat.completion``."""
    msg = data.get("message")
    msg = msg if isinstance(msg, dict) else {}
    calls = _tool_calls(msg.get("tool_calls"), start=0)
    content = _text(msg.get("content"))
    message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    thinking = _text(msg.get("thinking"))
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": _chat_logprobs(data.get("logprobs")),
        "finish_reason": finish_reason(data.get("done_reason"), bool(calls)),
    }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(data),
    }


def completion_response(data: dict[str, Any], *, request_id: str, model: str, created: int) -> dict[str, Any]:
    """A non-streamed ``/api/generate`` answer as an OpenAI ``text_completion``."""
    choice = {
        "text": _text(data.get("response")),
        "index": 0,
        "logprobs": _completion_logprobs(data.get("logprobs"), 0),
        "finish_reason": finish_reason(data.get("done_reason"), False),
    }
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(data),
    }


def embedding_response(data: dict[str, Any], *, model: str, encoding_format: str | None) -> dict[str, Any]:
    """An ``/api/embed`` answer as an OpenAI embedding list.

    With ``encoding_format="base64"`` each vector is the base64 of its little-endian float32
    bytes, which is what OpenAI sends and what the ``openai`` client decodes.
    """
    if encoding_format not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'.", param="encoding_format")
    vectors = data.get("embeddings")
    items: list[dict[str, Any]] = []
    for i, vector in enumerate(vectors if isinstance(vectors, list) else []):
        embedding: Any = vector
        if encoding_format == "base64":
            packed = struct.pack(f"<{len(vector)}f", *vector)
            embedding = base64.b64encode(packed).decode("ascii")
        items.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = _count(data.get("prompt_eval_count"))
    return {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# -- shared helpers -----------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usage(data: dict[str, Any]) -> dict[str, int]:
    prompt, completion = _count(data.get("prompt_eval_count")), _count(data.get("eval_count"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _tool_calls(raw: Any, *, start: int, indexed: bool = False) -> list[dict[str, Any]]:
    """Ollama tool calls (arguments as an object) as OpenAI ones (arguments as a JSON string).

    ``indexed`` adds the stream ``index``, numbered from ``start``.
    """
    if not isinstance(raw, list):
        return []
    calls: list[dict[str, Any]] = []
    for call in raw:
        if not isinstance(call, dict):
            continue
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = orjson.dumps(args if args is not None else {}).decode()
        call_id = call.get("id")
        converted: dict[str, Any] = {
            "id": call_id if isinstance(call_id, str) and call_id else f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": _text(fn.get("name")), "arguments": args},
        }
        if indexed:
            converted = {"index": start + len(calls), **converted}
        calls.append(converted)
    return calls


def _token_bytes(entry: dict[str, Any]) -> list[int]:
    raw = entry.get("bytes")
    return raw if isinstance(raw, list) else list(_text(entry.get("token")).encode())


def _chat_logprobs(raw: Any) -> dict[str, Any] | None:
    """Ollama's per-token logprobs as OpenAI's ``choice.logprobs`` (None when absent)."""
    if not isinstance(raw, list) or not raw:
        return None
    content = []
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        top = entry.get("top_logprobs")
        content.append(
            {
                "token": _text(entry.get("token")),
                "logprob": entry.get("logprob", 0.0),
                "bytes": _token_bytes(entry),
                "top_logprobs": [
                    {
                        "token": _text(t.get("token")),
                        "logprob": t.get("logprob", 0.0),
                        "bytes": _token_bytes(t),
                    }
                    for t in (top if isinstance(top, list) else [])
                    if isinstance(t, dict)
                ],
            }
        )
    return {"content": content, "refusal": None}


def _completion_logprobs(raw: Any, offset: int) -> dict[str, Any] | None:
    """Ollama's logprobs in the legacy completions shape; offsets count from the first generated
    character (``offset`` is where this piece starts)."""
    if not isinstance(raw, list) or not raw:
        return None
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        token = _text(entry.get("token"))
        top = entry.get("top_logprobs")
        out["tokens"].append(token)
        out["token_logprobs"].append(entry.get("logprob", 0.0))
        out["top_logprobs"].append(
            {_text(t.get("token")): t.get("logprob", 0.0) for t in top if isinstance(t, dict)}
            if isinstance(top, list)
            else None
        )
        out["text_offset"].append(offset)
        offset += len(token)
    return out


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _error_message(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        value = value["message"]
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return f"Upstream reported an error mid-stream: {text or 'no details given'}"


# -- streaming ----------------------------------------------------------------------------------


class _StreamTranslator:
    """NDJSON lines in, SSE bytes out. Subclasses turn one line's content into a chunk."""

    _object: ClassVar[str]

    def __init__(self, *, request_id: str, model: str, created: int, include_usage: bool) -> None:
        self._head: dict[str, Any] = {
            "id": request_id,
            "object": self._object,
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self._saw_tool_calls = False
        self.done = False
        self.usage: dict[str, int] | None = None

    def feed(self, line: bytes) -> bytes:
        """Translate one NDJSON line from Ollama; returns the SSE bytes to write (maybe b"")."""
        if self.done:
            return b""
        line = line.strip()
        if not line:
            return b""
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            preview = line[:200].decode("utf-8", "replace")
            return self.error(
                f"Upstream sent a stream line that is not valid JSON: {preview!r}", "upstream_bad_response"
            )
        if not isinstance(data, dict):
            return self.error(
                f"Upstream sent a stream line that is not a JSON object: {type(data).__name__}",
                "upstream_bad_response",
            )
        if data.get("error"):
            return self.error(_error_message(data["error"]))
        out = self._content(data)
        if data.get("done") is True:
            out += self._close(data)
        return out

    def finish(self) -> bytes:
        """Call at upstream EOF. b"" when the stream already ended (done line or error); otherwise
        the upstream stopped before its done line, which is reported as an in-band error."""
        if self.done:
            return b""
        return self.error(
            "Upstream ended the stream before its final message; the answer is incomplete.",
            "upstream_stream_interrupted",
        )

    def error(self, message: str, code: str = "upstream_error") -> bytes:
        """An in-band error event the ``openai`` client raises as APIError; ends the stream."""
        if self.done:
            return b""
        self.done = True
        return _sse({"error": {"message": message, "type": "upstream_error", "param": None, "code": code}})

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        chunk = {**self._head, "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None
        return _sse(chunk)

    def _close(self, data: dict[str, Any]) -> bytes:
        self.done = True
        self.usage = _usage(data)
        out = self._chunk(self._final_choice(finish_reason(data.get("done_reason"), self._saw_tool_calls)))
        if self._include_usage:
            out += _sse({**self._head, "choices": [], "usage": self.usage})
        return out + _DONE

    def _content(self, data: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def _final_choice(self, reason: str) -> dict[str, Any]:
        raise NotImplementedError


class ChatStreamTranslator(_StreamTranslator):
    """``/api/chat`` NDJSON -> ``chat.completion.chunk`` events."""

    _object = "chat.completion.chunk"

    def __init__(self, *, request_id: str, model: str, created: int, include_usage: bool) -> None:
        super().__init__(request_id=request_id, model=model, created=created, include_usage=include_usage)
        self._started = False
        self._tool_index = 0  # running across the stream, so parallel calls never share an index

    def _content(self, data: dict[str, Any]) -> bytes:
        msg = data.get("message")
        msg = msg if isinstance(msg, dict) else {}
        delta: dict[str, Any] = {} if self._started else {"role": "assistant", "content": ""}
        content, thinking = _text(msg.get("content")), _text(msg.get("thinking"))
        if content:
            delta["content"] = content
        if thinking:
            delta["reasoning_content"] = thinking
        calls = _tool_calls(msg.get("tool_calls"), start=self._tool_index, indexed=True)
        if calls:
            delta["tool_calls"] = calls
            self._tool_index += len(calls)
            self._saw_tool_calls = True
        logprobs = _chat_logprobs(data.get("logprobs"))
        if self._started and not delta and logprobs is None:
            return b""
        self._started = True
        return self._chunk({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None})

    def _final_choice(self, reason: str) -> dict[str, Any]:
        return {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}


class CompletionStreamTranslator(_StreamTranslator):
    """``/api/generate`` NDJSON -> ``text_completion`` events."""

    _object = "text_completion"

    def __init__(self, *, request_id: str, model: str, created: int, include_usage: bool) -> None:
        super().__init__(request_id=request_id, model=model, created=created, include_usage=include_usage)
        self._offset = 0  # characters generated so far, for legacy logprobs text_offset

    def _content(self, data: dict[str, Any]) -> bytes:
        text = _text(data.get("response"))
        logprobs = _completion_logprobs(data.get("logprobs"), self._offset)
        if not text and logprobs is None:
            return b""
        self._offset += len(text)
        return self._chunk({"text": text, "index": 0, "logprobs": logprobs, "finish_reason": None})

    def _final_choice(self, reason: str) -> dict[str, Any]:
        return {"text": "", "index": 0, "logprobs": None, "finish_reason": reason}
