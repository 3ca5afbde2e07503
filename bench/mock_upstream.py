"""Zero-latency mock upstream speaking the OpenAI and Ollama HTTP shapes.

Built on a raw asyncio ``Protocol`` (uvloop when available) so that it is never the bottleneck of
a gateway benchmark: every answer is a pre-rendered byte string, requests are parsed just enough
(request line, headers, Content-Length or chunked body) and connections are kept alive.

Routes::

    POST /v1/chat/completions  chat.completion JSON, or SSE when the body has "stream": true
    GET  /v1/models            model list
    POST /api/chat             Ollama JSON, or NDJSON unless the body has "stream": false
    GET  /api/tags, /api/version, /api/ps, /

Usage: ``python bench/mock_upstream.py --port 11434``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
from typing import Any, cast

OPENAI_MODEL = "gpt-mock"
OLLAMA_MODEL = "llama3.2"
CREATED = 1_735_689_600
CREATED_AT = "2025-01-01T00:00:00.000000Z"
WORDS = ["Hello", " from", " the", " corral", " mock", " upstream", ",", " friend."]
CONTENT = "".join(WORDS)
# Padding to bring the non-streaming chat.completion answer to about 1 KB, like a short real reply.
LONG_CONTENT = (CONTENT + " ") * 12

_STREAM_RE = re.compile(rb'"stream"\s*:\s*(true|false)')
_MAX_HEAD = 64 * 1024


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, content_type: str, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def _chunked(status: str, content_type: str, pieces: list[bytes]) -> bytes:
    """A complete chunked response: one HTTP chunk per piece, then the terminating chunk."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = [head.encode()]
    for piece in pieces:
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def _openai_completion() -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-mock0000000000000000000000",
            "object": "chat.completion",
            "created": CREATED,
            "model": OPENAI_MODEL,
            "system_fingerprint": "fp_mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": LONG_CONTENT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 26,
                "completion_tokens": 72,
                "total_tokens": 98,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }
    )


def _openai_stream() -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": "chatcmpl-mock0000000000000000000000",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": OPENAI_MODEL,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + _dumps(obj) + b"\n\n"

    pieces = [chunk({"role": "assistant", "content": WORDS[0]}, None)]
    pieces += [chunk({"content": word}, None) for word in WORDS[1:]]
    usage = {"prompt_tokens": 26, "completion_tokens": len(WORDS), "total_tokens": 26 + len(WORDS)}
    pieces.append(chunk({}, "stop", usage))
    pieces.append(b"data: [DONE]\n\n")
    return pieces


def _ollama_final(content: str) -> dict[str, Any]:
    return {
        "model": OLLAMA_MODEL,
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": content},
        "done": True,
        "done_reason": "stop",
        "total_duration": 123_456_789,
        "load_duration": 1_234_567,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 12_345_678,
        "eval_count": len(WORDS),
        "eval_duration": 98_765_432,
    }


def _ollama_stream() -> list[bytes]:
    pieces = [
        _dumps(
            {
                "model": OLLAMA_MODEL,
                "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": word},
                "done": False,
            }
        )
        + b"\n"
        for word in WORDS
    ]
    pieces.append(_dumps(_ollama_final("")) + b"\n")
    return pieces


def _build_routes() -> dict[tuple[bytes, bytes], bytes | tuple[bytes, bytes]]:
    """Map (method, path) to a response, or to a (non-stream, stream) pair of responses."""
    json_type = "application/json; charset=utf-8"
    ok = "200 OK"
    models = {
        "object": "list",
        "data": [{"id": OPENAI_MODEL, "object": "model", "created": CREATED, "owned_by": "mock"}],
    }
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    }
    tag = {
        "name": f"{OLLAMA_MODEL}:latest",
        "model": f"{OLLAMA_MODEL}:latest",
        "modified_at": CREATED_AT,
        "size": 2_019_393_189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": details,
    }
    root = _response(ok, "text/plain; charset=utf-8", b"Ollama is running")
    running = {**tag, "expires_at": "2099-01-01T00:00:00Z", "size_vram": 2_019_393_189}
    return {
        (b"POST", b"/v1/chat/completions"): (
            _response(ok, "application/json", _openai_completion()),
            _chunked(ok, "text/event-stream; charset=utf-8", _openai_stream()),
        ),
        (b"GET", b"/v1/models"): _response(ok, "application/json", _dumps(models)),
        (b"POST", b"/api/chat"): (
            _response(ok, json_type, _dumps(_ollama_final(CONTENT))),
            _chunked(ok, "application/x-ndjson", _ollama_stream()),
        ),
        (b"GET", b"/api/tags"): _response(ok, json_type, _dumps({"models": [tag]})),
        (b"GET", b"/api/version"): _response(ok, json_type, _dumps({"version": "0.6.5"})),
        (b"GET", b"/api/ps"): _response(ok, json_type, _dumps({"models": [running]})),
        (b"GET", b"/"): root,
        (b"HEAD", b"/"): root.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n",  # GET's headers, no body
    }


ROUTES = _build_routes()
NOT_FOUND = _response("404 Not Found", "text/plain; charset=utf-8", b"404 page not found")
BAD_REQUEST = _response("400 Bad Request", "text/plain", b"bad request", "Connection: close\r\n")


def wants_stream(path: bytes, body: bytes) -> bool:
    """The request's "stream" flag; absent means no for OpenAI and yes for Ollama (its default)."""
    match = _STREAM_RE.search(body)
    if match is None:
        return path.startswith(b"/api/")
    return match.group(1) == b"true"


class _ChunkedBody(Exception):
    """The request body is chunked and not complete yet."""


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int]:
    """Decode a chunked body starting at ``start``; return (body, end offset) or raise _ChunkedBody."""
    parts: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            raise _ChunkedBody
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # optional trailers, then the blank line
            if end < 0:
                raise _ChunkedBody
            return b"".join(parts), end + 4
        data_end = eol + 2 + size
        if len(buf) < data_end + 2:
            raise _ChunkedBody
        parts.append(bytes(buf[eol + 2 : data_end]))
        pos = data_end + 2


class MockProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; handles pipelined requests in order."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out: list[bytes] = []
        close = False
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buf) > _MAX_HEAD:
                    out.append(BAD_REQUEST)
                    close = True
                break
            head = bytes(buf[:head_end])
            first_eol = head.find(b"\r\n")
            request_line = head if first_eol < 0 else head[:first_eol]
            parts = request_line.split(b" ")
            if len(parts) != 3:
                out.append(BAD_REQUEST)
                close = True
                break
            method, target, version = parts
            lower = head[first_eol:].lower() if first_eol >= 0 else b""
            body_start = head_end + 4
            try:
                if b"\r\ntransfer-encoding:" in lower and b"chunked" in lower:
                    body, end = _dechunk(buf, body_start)
                else:
                    length = 0
                    pos = lower.find(b"\r\ncontent-length:")
                    if pos >= 0:
                        eol = lower.find(b"\r\n", pos + 2)
                        length = int(lower[pos + 17 : eol if eol >= 0 else None])
                    end = body_start + length
                    if len(buf) < end:
                        break
                    body = bytes(buf[body_start:end])
            except _ChunkedBody:
                break
            except ValueError:
                out.append(BAD_REQUEST)
                close = True
                break
            del buf[:end]
            path = target.split(b"?", 1)[0]
            answer = ROUTES.get((method, path), NOT_FOUND)
            if isinstance(answer, tuple):
                answer = answer[1] if wants_stream(path, body) else answer[0]
            out.append(answer)
            if b"\r\nconnection: close" in lower or version == b"HTTP/1.0":
                close = True
                break
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
            if close:
                self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
