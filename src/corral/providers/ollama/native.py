"""Native Ollama calls (the Ollama facade) passed through to an Ollama upstream.

Nothing is translated: the body goes on with only its model replaced (spliced, not
re-encoded) and, where the client left them out, the provider's keep_alive, num_ctx and
options, or a pinned num_ctx. Streams are relayed byte for byte. As on the OpenAI surface,
chat and generate always stream from Ollama, so a hung instance is caught at the first token;
a non-streaming client gets the folded answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from corral.core.body import with_model
from corral.core.call import Attempt, Call, Endpoint, Outcome, Reply
from corral.errors import UpstreamError
from corral.httpclient import Response, TransportError

if TYPE_CHECKING:
    from corral.providers.ollama.provider import OllamaProvider

NDJSON = "application/x-ndjson"
_PATHS = {
    Endpoint.CHAT: "chat",
    Endpoint.COMPLETION: "generate",
    Endpoint.EMBEDDING: "embed",
    Endpoint.LEGACY_EMBEDDING: "embeddings",
}
_DONE = b'"done":true'
TAIL = 4096  # bytes of a stream kept to read its final usage from, later
_ERROR_LINE = b'\n{"error"'


def error_line(message: str) -> bytes:
    return orjson.dumps({"error": message}) + b"\n"


def payload(p: OllamaProvider, call: Call, attempt: Attempt, *, upstream_stream: bool) -> bytes:
    body = call.body
    extra: dict[str, Any] = {}
    if upstream_stream and body.get("stream", True) is not True:
        extra["stream"] = True
    generating = call.endpoint in (Endpoint.CHAT, Endpoint.COMPLETION)
    if p.cfg.keep_alive is not None and "keep_alive" not in body:
        extra["keep_alive"] = p.cfg.keep_alive
    if generating:
        raw_options = body.get("options")
        given: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
        options = {**p.cfg.options, **given}
        if p.cfg.num_ctx is not None and "num_ctx" not in options:
            options["num_ctx"] = p.cfg.num_ctx
        if attempt.num_ctx is not None:
            options["num_ctx"] = attempt.num_ctx  # pinned for this model: clients cannot change it
        if options != given:
            extra["options"] = options
    if not extra:
        return with_model(call.raw, body, attempt.model)
    return orjson.dumps({**body, "model": attempt.model, **extra})


async def send(p: OllamaProvider, call: Call, attempt: Attempt) -> Reply:
    path = p.cfg.path(_PATHS[call.endpoint])
    generating = call.endpoint in (Endpoint.CHAT, Endpoint.COMPLETION)
    started = time.monotonic()
    resp = await p.post(
        path, payload(p, call, attempt, upstream_stream=generating), attempt.first_byte_timeout
    )
    if not generating:
        reply = Reply(body=await p.read(resp))
        reply.outcome.tail = reply.body or b""
        return reply
    if call.stream:
        reply = Reply(content_type=NDJSON)
        reply.chunks = relay(p, resp, reply.outcome)
        return reply
    remaining = None
    if attempt.first_byte_timeout is not None:
        remaining = max(0.001, attempt.first_byte_timeout - (time.monotonic() - started))
    data = await p.aggregate(resp, remaining, call.endpoint is Endpoint.CHAT)
    reply = Reply(body=orjson.dumps(data))
    reply.outcome.tail = reply.body or b""
    return reply


async def relay(p: OllamaProvider, resp: Response, outcome: Outcome) -> AsyncIterator[bytes]:
    """Pass Ollama's NDJSON through unchanged, watching for its final line and error lines."""
    sent = False
    done = False
    tail = b"\n"
    try:
        try:
            async for data in resp.chunks():
                window = tail + data
                if not sent and data.lstrip().startswith(b'{"error"'):
                    p.parse(data.split(b"\n", 1)[0])  # raises: nothing reached the client, fail over
                if _ERROR_LINE in window:
                    outcome.error = f"Upstream '{p.name}' reported an error mid-stream."
                done = done or _DONE in window
                tail = window[-32:]
                outcome.tail = (outcome.tail + data)[-TAIL:]
                sent = True
                outcome.ended = resp.complete and (done or outcome.error is not None)
                yield data
        except (TransportError, TimeoutError) as exc:
            detail = "timed out" if isinstance(exc, TimeoutError) else f"failed ({exc.__class__.__name__})"
            if not sent:
                raise UpstreamError(
                    p.name, f"{detail} before its first token.", code="upstream_stream_interrupted"
                ) from None
            outcome.error = f"Upstream '{p.name}' {detail} mid-stream; the answer is incomplete."
            yield error_line(outcome.error)
            return
        if not sent:
            raise UpstreamError(
                p.name, "ended the stream before its first token.", code="upstream_stream_interrupted"
            )
        if not done and outcome.error is None:
            outcome.error = f"Upstream '{p.name}' ended the stream early; the answer is incomplete."
            yield error_line(outcome.error)
    finally:
        resp.close()  # read to its end: a no-op; cut short (client gone): the connection goes
