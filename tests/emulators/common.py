"""Pieces shared by the Ollama and OpenAI emulators.

Recorded requests, fault injection, streamed-body writing, and the deterministic "model":
the reply to a message ``T`` is ``"Echo: T"``, split into word tokens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal[
    "busy",  # answer with the upstream's "overloaded" status and body
    "status",  # answer with `status` and `message` in the upstream's error shape
    "hang_before_headers",  # sleep `seconds`, then answer normally
    "midstream_error",  # after `after_chunks` chunks send an error event/line and end (status 200)
    "stall_midstream",  # after `after_chunks` chunks sleep `seconds`, then continue
    "drop_midstream",  # after `after_chunks` chunks close the connection without finishing the body
]
PRE_RESPONSE_FAULTS = ("busy", "status", "hang_before_headers")
STREAM_FAULTS = ("midstream_error", "stall_midstream", "drop_midstream")


@dataclass
class Fault:
    """A failure to inject. Set ``emu.fault = Fault(...)`` (or per model) from any thread.

    ``paths`` limits the fault to those request paths; ``None`` means the emulator's
    inference endpoints (chat, generate/completions, embeddings). ``times`` makes the fault
    fire only that many times (then it is spent); ``None`` means every time.
    """

    kind: FaultKind
    status: int | None = None
    message: str | None = None
    seconds: float = 5.0
    after_chunks: int = 1
    times: int | None = None
    paths: tuple[str, ...] | None = None
    retry_after: float | None = None
    fired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def claim(self) -> bool:
        """Count one firing; False once ``times`` is used up."""
        with self._lock:
            if self.times is not None and self.fired >= self.times:
                return False
            self.fired += 1
            return True


@dataclass
class RecordedRequest:
    """One request as the emulator saw it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any | None
    query: dict[str, str]
    peer: Any = None  # the client's (host, port): which connection carried the request
    raw: bytes = b""  # the body exactly as it arrived


def select_fault(
    fault: Fault | None,
    model_faults: dict[str, Fault],
    model: str | None,
    path: str,
    default_paths: set[str],
    kinds: tuple[str, ...],
) -> Fault | None:
    """The fault of one of ``kinds`` that applies to this request (per-model first), unclaimed."""
    for candidate in (model_faults.get(model) if model else None, fault):
        if candidate is None or candidate.kind not in kinds:
            continue
        paths = set(candidate.paths) if candidate.paths is not None else default_paths
        if path in paths and (candidate.times is None or candidate.fired < candidate.times):
            return candidate
    return None


class Recorder:
    """aiohttp middleware that records requests and tracks concurrency."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                json=body,
                query=dict(request.query),
                peer=request.transport.get_extra_info("peername") if request.transport else None,
                raw=raw,
            )
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


async def read_json(request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
    """Parse the body as a JSON object: (body, None) or (None, error message)."""
    raw = await request.read()
    if not raw:
        return None, "missing request body"
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return None, f"invalid JSON body: {exc}"
    if not isinstance(body, dict):
        return None, "request body must be a JSON object"
    return body, None


# ---------------------------------------------------------------------------- streaming


async def write_stream(
    request: web.Request,
    chunks: Iterable[bytes],
    *,
    content_type: str,
    fault: Fault | None,
    token_delay: float,
    error_chunk: Callable[[str], bytes],
    trailer: bytes = b"",
    first_token_delay: float = 0.0,
) -> web.StreamResponse:
    """Send ``chunks`` as a chunked 200 body, applying a mid-stream fault if one is given.

    ``trailer`` (e.g. SSE ``data: [DONE]``) is sent after the chunks unless the stream failed.
    ``first_token_delay`` holds the first chunk back that long after the headers (a slow prompt
    evaluation); a client that leaves meanwhile is noticed at once, as Ollama cancels it.
    """
    resp = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    await resp.prepare(request)
    if first_token_delay:
        await _think(request, first_token_delay)
    for index, chunk in enumerate(chunks):
        if fault is not None and index == fault.after_chunks and fault.claim():
            going_on = await _midstream_fault(request, resp, fault, error_chunk)
            if not going_on:
                return resp
        if token_delay and index:
            await asyncio.sleep(token_delay)
        await resp.write(chunk)
    if trailer:
        await resp.write(trailer)
    await resp.write_eof()
    return resp


async def _think(request: web.Request, seconds: float) -> None:
    """Wait ``seconds``; raise ConnectionResetError as soon as the client closed the connection."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("the client closed the connection before the first token")
        await asyncio.sleep(min(0.01, left))


async def _midstream_fault(
    request: web.Request, resp: web.StreamResponse, fault: Fault, error_chunk: Callable[[str], bytes]
) -> bool:
    """Apply a mid-stream fault. True if the stream should go on afterwards."""
    if fault.kind == "stall_midstream":
        await asyncio.sleep(fault.seconds)
        return True
    if fault.kind == "midstream_error":
        await resp.write(error_chunk(fault.message or "an error was encountered while running the model"))
        await resp.write_eof()
        return False
    # drop_midstream: close the socket so the chunked body never terminates.
    if request.transport is not None:
        request.transport.abort()
    return False


# ---------------------------------------------------------------------------- the "model"

_TOKEN_RE = re.compile(r"\s*\S+")


def tokens(text: str) -> list[str]:
    """Word tokens that concatenate back to ``text`` (leading whitespace kept)."""
    return _TOKEN_RE.findall(text)


def word_count(text: str) -> int:
    return len(text.split())


def echo_text(text: str, images: int = 0) -> str:
    reply = f"Echo: {text}"
    if images:
        reply += f" [{images} image{'s' if images != 1 else ''}]"
    return reply


def requested_tools(text: str, tool_names: list[str]) -> list[str]:
    """Tool names asked for with ``call <name>`` (``call a and b`` asks for two), in order."""
    match = re.search(r"\bcall\b(.*)", text, re.IGNORECASE | re.DOTALL)
    if not match:
        return []
    tail = match.group(1)
    found: list[tuple[int, str]] = []
    for name in tool_names:
        hit = re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", tail)
        if hit:
            found.append((hit.start(), name))
    return [name for _, name in sorted(found)]


def tool_arguments(text: str, schema: dict[str, Any] | None, single: bool) -> dict[str, Any]:
    """Arguments for a requested tool: a JSON object written in the message (single call),
    else a value per schema property (string "test", integer 1, number 1.5, boolean true)."""
    if single and "{" in text:
        try:
            value = json.loads(text[text.index("{") : text.rindex("}") + 1])
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
    samples: dict[str, Any] = {"string": "test", "integer": 1, "number": 1.5, "boolean": True}
    samples |= {"array": [], "object": {}}
    args: dict[str, Any] = {}
    for name, prop in ((schema or {}).get("properties") or {}).items():
        if isinstance(prop, dict) and prop.get("enum"):
            args[name] = prop["enum"][0]
        else:
            kind = prop.get("type", "string") if isinstance(prop, dict) else "string"
            args[name] = samples.get(kind if isinstance(kind, str) else "string", "test")
    return args


def call_id(seed: str, index: int) -> str:
    return "call_" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8]


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic, L2-normalised vector derived from a hash of ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embedding_base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
