"""The Ollama upstream adapter: a call from any surface but Ollama's own (OpenAI's chat,
completions and embeddings, ``/v1/messages``, ``/v1/responses``), read into the conversation model
and written as native ``/api/chat``, ``/api/generate`` or ``/api/embed``, so the provider's and
alias's settings apply (``num_ctx``, ``keep_alive``, default ``options``), which Ollama's own
OpenAI-compatible endpoints cannot be told.

Chat and generate always stream from Ollama, so the first-token deadline and stall detection work
for every call; a whole answer is the stream folded (``aggregate``). A stream is read as the
model's events, one batch per network read, each line no longer than ``max_line_bytes``. When the
batch holding the final line is in, the connection goes back to the pool before that batch is
written, so the client's next request can reuse it. A failure before any content raises (the
engine fails over); after, it is a ``Failure`` in-band.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from corral.conversation.answer import Delta, Event, Failure
from corral.conversation.call import Attempt, Call, Endpoint, Reply
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama import requests as ollama_requests
from corral.conversation.ollama.requests import OllamaDefaults
from corral.conversation.ollama.streams import NDJSONReader
from corral.errors import InvalidRequest, UpstreamError
from corral.httpclient import TransportError
from corral.providers import model_path
from corral.providers.upstream import stream_failure

if TYPE_CHECKING:
    from corral.httpclient import Response
    from corral.providers.ollama.provider import OllamaProvider

_PATHS = {Endpoint.CHAT: "chat", Endpoint.COMPLETION: "generate", Endpoint.EMBEDDING: "embed"}


def defaults(provider: OllamaProvider, endpoint: Endpoint) -> OllamaDefaults:
    """The provider's settings under every request; embedding models have their own context
    size, so only keep_alive carries over to them."""
    cfg = provider.cfg
    if endpoint is Endpoint.EMBEDDING:
        return OllamaDefaults(keep_alive=cfg.keep_alive)
    return OllamaDefaults(keep_alive=cfg.keep_alive, num_ctx=cfg.num_ctx, options=dict(cfg.options))


async def send(provider: OllamaProvider, call: Call, attempt: Attempt) -> Reply:
    started = model_path.now_ns()
    req = model_path.request_of(call)
    endpoint = Endpoint.EMBEDDING if req.endpoint is Endpoint.LEGACY_EMBEDDING else req.endpoint
    if req.tools and req.tool_choice is not None and req.tool_choice.strict:
        what = f"the tool {req.tool_choice.name!r}" if req.tool_choice.name else "a tool call"
        raise InvalidRequest(
            f"tool_choice forces {what}, which an Ollama upstream cannot enforce: use tool_choice "
            "'auto' (the model decides) or 'none', or route this model to an upstream that honours it.",
            param="tool_choice",
        )
    generating = endpoint is not Endpoint.EMBEDDING
    upstream = replace(req, stream=True) if generating else req
    body = ollama_requests.write(
        upstream, attempt.model, defaults=defaults(provider, endpoint), num_ctx=attempt.num_ctx
    )
    path = provider.cfg.path(_PATHS[endpoint])
    # a stream's first-token deadline is the engine's, around this whole call
    resp = await provider.post(path, orjson.dumps(body), None if req.stream else attempt.first_byte_timeout)
    if not generating:
        data = provider.parse(await provider.read(resp))
        return model_path.reply_of(call, ollama_answers.read_embed(data), started)
    chat = endpoint is Endpoint.CHAT
    if not req.stream:
        data = await provider.aggregate(resp, attempt.first_byte_timeout, chat)
        return model_path.answered(call, ollama_answers.read(data), started)
    return model_path.reply_of(call, _events(provider, resp, chat), started)


def _content(events: list[Event]) -> bool:
    return any(isinstance(e, Delta) and (e.text or e.reasoning or e.tool_calls) for e in events)


async def _events(provider: OllamaProvider, resp: Response, chat: bool) -> AsyncIterator[list[Event]]:
    """Ollama's NDJSON read into the model's events, one batch per network read."""
    from corral.providers.ollama.provider import ndjson_batches

    reader = NDJSONReader(chat=chat)
    started = False  # content reached the client: a failure now goes in-band
    try:
        try:
            async for lines in ndjson_batches(resp.chunks(), provider.cfg.max_line_bytes):
                events: list[Event] = []
                for line in lines:
                    events += reader.feed(line)
                    if reader.done:
                        break
                if not events:
                    continue
                if not started:
                    failure = next((e for e in events if isinstance(e, Failure)), None)
                    if failure is not None and not _content(events):  # nothing sent yet: fail over
                        raise UpstreamError(
                            provider.name,
                            f"failed before its first token: {failure.message}",
                            code=failure.code,
                        )
                    started = _content(events)
                if reader.done:
                    await resp.settle()  # the end marker in, the connection back, before the last write
                yield events
                if reader.done:
                    return
            events = reader.end()
            if not started:
                raise UpstreamError(
                    provider.name,
                    "ended the stream before its first token.",
                    code="upstream_stream_interrupted",
                )
            yield events
        except (TransportError, TimeoutError) as exc:
            failure_ = stream_failure(provider.cfg, exc, started=started)
            if not started:
                raise failure_ from None
            yield [Failure(failure_.message, failure_.code or "upstream_stream_interrupted")]
    finally:
        if reader.done:
            resp.release()
        else:
            resp.close()
