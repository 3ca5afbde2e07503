"""An Ollama provider answering a call through the conversation model (``model_path``): the
``/v1/messages`` and ``/v1/responses`` surfaces, translated to native ``/api/chat`` so the
provider's and alias's settings (``num_ctx``, ``keep_alive``, default ``options``) apply, which
Ollama's own ``/v1/messages`` and ``/v1/responses`` cannot be told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from corral.conversation.answer import Event
from corral.conversation.call import Attempt, Call, Endpoint, Reply
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama.requests import OllamaDefaults
from corral.conversation.ollama.streams import NDJSONReader
from corral.errors import InvalidRequest
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
    return model_path.streamed(call, provider.name, _events(provider, resp), started)


class _LineReader:
    """``NDJSONReader`` fed a block of whole lines at a time."""

    __slots__ = ("reader",)

    def __init__(self) -> None:
        self.reader = NDJSONReader(chat=True)

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for line in data.split(b"\n"):
            events.extend(self.reader.feed(line))
        return events

    def end(self) -> list[Event]:
        return self.reader.end()


async def _events(provider: OllamaProvider, resp: Response) -> AsyncIterator[list[Event]]:
    lines = _LineReader()
    reader = lines.reader
    try:
        async with upstream_errors(provider.cfg):
            async for batch in model_path.read_stream(_lines(resp), lines):
                yield batch
                if reader.done:
                    return
    finally:
        if reader.done:
            resp.release()
        else:
            resp.close()


async def _lines(resp: Response) -> AsyncIterator[bytes]:
    """The body's NDJSON lines, the whole lines of each network read joined (one feed each)."""
    rest = b""
    async for data in resp.chunks():
        rest += data
        cut = rest.rfind(b"\n")
        if cut >= 0:
            whole, rest = rest[: cut + 1], rest[cut + 1 :]
            yield whole
    if rest.strip():
        yield rest
