"""An Ollama provider answering a call through the conversation model (``model_path``): the
``/v1/messages`` and ``/v1/responses`` surfaces, translated to native ``/api/chat`` so the
provider's and alias's settings (``num_ctx``, ``keep_alive``, default ``options``) apply, which
Ollama's own ``/v1/messages`` and ``/v1/responses`` cannot be told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from corral.conversation.answer import Event, Failure
from corral.conversation.call import Attempt, Call, Endpoint, Reply
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama.requests import OllamaDefaults
from corral.conversation.ollama.streams import NDJSONReader
from corral.errors import InvalidRequest
from corral.httpclient import TransportError
from corral.providers import model_path
from corral.providers.upstream import upstream_errors

if TYPE_CHECKING:
    from corral.httpclient import Response
    from corral.providers.ollama.provider import OllamaProvider


async def send(provider: OllamaProvider, call: Call, attempt: Attempt) -> Reply:
    if call.endpoint is not Endpoint.CHAT:
        raise InvalidRequest("This surface serves chat only.")
    started = model_path.now_ns()
    req = model_path.request_of(call)
    cfg = provider.cfg
    defaults = OllamaDefaults(keep_alive=cfg.keep_alive, num_ctx=cfg.num_ctx, options=dict(cfg.options))
    body = model_path.ollama_body(req, attempt.model, defaults=defaults, num_ctx=attempt.num_ctx)
    path = cfg.path("chat")
    resp = await provider.post(path, orjson.dumps(body), None if call.stream else attempt.first_byte_timeout)
    if not call.stream:
        data = await provider.aggregate(resp, attempt.first_byte_timeout, True)
        return model_path.answered(call, ollama_answers.read(data), started)
    return model_path.reply_of(call, _events(provider, resp), started)


async def _events(provider: OllamaProvider, resp: Response) -> AsyncIterator[list[Event]]:
    """The upstream's NDJSON lines read into the model's events, one batch per network read; a
    failure before any content raises (the engine fails over). One generator, not a stack of
    them: each layer costs a few microseconds per read."""
    reader = NDJSONReader(chat=True)
    first = True
    rest = b""
    try:
        async with upstream_errors(provider.cfg):
            try:
                async for data in resp.chunks():
                    rest += data
                    cut = rest.rfind(b"\n")
                    if cut < 0:
                        continue
                    events: list[Event] = []
                    for line in rest[:cut].split(b"\n"):
                        events += reader.feed(line)
                    rest = rest[cut + 1 :]
                    if not events:
                        continue
                    if first:
                        model_path.check_first(provider.name, events)
                        first = False
                    yield events
                    if reader.done:
                        return
            except (TransportError, TimeoutError) as exc:
                failure: list[Event] = [
                    Failure(
                        f"Upstream's stream broke off ({exc.__class__.__name__}); the answer is incomplete.",
                        "upstream_stream_interrupted",
                    )
                ]
                if first:
                    model_path.check_first(provider.name, failure)
                yield failure
                return
            events = reader.feed(rest) + reader.end()
            if first:
                model_path.check_first(provider.name, events)
            yield events
    finally:
        if reader.done:
            resp.release()
        else:
            resp.close()
