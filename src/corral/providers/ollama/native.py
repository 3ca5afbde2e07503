"""Native Ollama calls (the Ollama facade) passed through to an Ollama upstream.

Nothing is translated: the body goes on as corral parsed it (re-encoded, so Ollama reads what
corral read) with only its model replaced and, where the client left them out, the provider's
keep_alive, num_ctx and options, or a pinned num_ctx. Streams are relayed byte for byte. As on
the OpenAI surface, chat and generate always stream from Ollama, so a hung instance is caught at
the first token; a non-streaming client gets the folded answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from corral.conversation.answer import Usage
from corral.conversation.body import OLLAMA_FIELDS, OLLAMA_OPTIONS, without_shadowing
from corral.conversation.call import Attempt, Call, Endpoint, Outcome, Reply
from corral.conversation.ollama.answers import read_usage
from corral.errors import UpstreamError
from corral.httpclient import Response, TransportError
from corral.providers.passthrough import Renamer, usage_of
from corral.providers.upstream import Framer, stream_failure

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
_ERROR_LINE = b'\n{"error"'


def error_line(message: str) -> bytes:
    return orjson.dumps({"error": message}) + b"\n"


def payload(p: OllamaProvider, call: Call, attempt: Attempt, *, upstream_stream: bool) -> bytes:
    """The body Ollama gets: the client's as corral read it, re-encoded (each key once), with the
    routed model and, where the client left them out, the provider's keep_alive, num_ctx and
    options, or a pinned num_ctx. Keys Go would take for a field by their case (``MODEL``,
    ``options.NUM_CTX``) are dropped: the request checks refuse them, this is the last guard."""
    body = without_shadowing(call.body, OLLAMA_FIELDS)
    out: dict[str, Any] = {**body, "model": attempt.model}
    if upstream_stream and body.get("stream", True) is not True:
        out["stream"] = True
    if p.cfg.keep_alive is not None and "keep_alive" not in body:
        out["keep_alive"] = p.cfg.keep_alive
    if call.endpoint in (Endpoint.CHAT, Endpoint.COMPLETION):
        raw_options = body.get("options")
        given: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
        options = {**p.cfg.options, **without_shadowing(given, OLLAMA_OPTIONS)}
        if p.cfg.num_ctx is not None and "num_ctx" not in options:
            options["num_ctx"] = p.cfg.num_ctx
        if attempt.num_ctx is not None:
            options["num_ctx"] = attempt.num_ctx  # pinned for this model: clients cannot change it
        if options != given:
            out["options"] = options
    return orjson.dumps(out)


async def send(p: OllamaProvider, call: Call, attempt: Attempt) -> Reply:
    path = p.cfg.path(_PATHS[call.endpoint])
    generating = call.endpoint in (Endpoint.CHAT, Endpoint.COMPLETION)
    started = time.monotonic()
    resp = await p.post(
        path, payload(p, call, attempt, upstream_stream=generating), attempt.first_byte_timeout
    )
    if not generating:
        body = await p.read(resp)
        reply = Reply(body=Renamer(call.model, attempt.model)(body))
        reply.outcome.usage = usage_of(body, ollama=True)
        return reply
    if call.stream:
        reply = Reply(content_type=NDJSON)
        reply.chunks = relay(p, resp, reply.outcome, call.model, attempt.model)
        return reply
    remaining = None
    if attempt.first_byte_timeout is not None:
        remaining = max(0.001, attempt.first_byte_timeout - (time.monotonic() - started))
    data, first_at = await p.aggregate(resp, remaining, call.endpoint is Endpoint.CHAT)
    data["model"] = call.model  # the name the client asked for, as Ollama answers it
    reply = Reply(body=orjson.dumps(data))
    reply.outcome.usage = read_usage(data)
    reply.outcome.first_token_at = first_at
    return reply


async def relay(
    p: OllamaProvider, resp: Response, outcome: Outcome, requested: str, served: str | None = None
) -> AsyncIterator[bytes]:
    """Pass Ollama's NDJSON through unchanged but for the model's name (the one the client asked
    for), in whole lines, watching for its final line (its token counts) and error lines. The
    start of a line a read leaves unfinished waits for the rest (a line over ``max_line_bytes``
    fails the stream), so the client never gets half a line, nor an error line glued to one;
    Ollama ends its writes at line ends, so this costs nothing as a rule. Lines are counted, for
    an estimate of the tokens when a stream breaks before its final line."""
    sent = False
    done = False
    tail = b"\n"
    lines = Framer(p.cfg.max_line_bytes)
    rename = Renamer(requested, served)
    try:
        try:
            async for chunk in resp.chunks():
                data = lines.feed(chunk)
                if data:
                    window = tail + data
                    if not sent and data.lstrip().startswith(b'{"error"'):
                        p.parse(data.split(b"\n", 1)[0])  # raises: nothing reached the client, fail over
                    if _ERROR_LINE in window:
                        outcome.error = f"Upstream '{p.name}' reported an error mid-stream."
                    if not done and _DONE in window:
                        done = True
                        outcome.usage = _final_usage(data)
                    tail = window[-32:]
                    outcome.pieces += data.count(b"\n")
                    sent = True
                    outcome.ended = resp.complete and not lines.held and (done or outcome.error is not None)
                    yield rename(data)
                lines.check()
            rest = lines.rest()
            if rest:  # the body ended without a last line end
                if not done and _DONE in tail + rest:
                    done = True
                    outcome.usage = _final_usage(rest)
                sent = True
                yield rename(rest)
        except (TransportError, TimeoutError) as exc:
            if done:  # the answer was whole: what broke after its last line costs only the connection
                return
            failure = stream_failure(p.cfg, exc, started=sent)
            if not sent:
                raise failure from None
            outcome.error = failure.message
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


def _final_usage(data: bytes) -> Usage | None:
    """The token counts of Ollama's final line, the last of ``data``."""
    return usage_of(data.rstrip().rsplit(b"\n", 1)[-1], ollama=True)
