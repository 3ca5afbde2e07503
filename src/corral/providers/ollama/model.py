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
from typing import TYPE_CHECKING

import orjson

from corral.conversation.answer import Delta, Event, Failure
from corral.conversation.call import Attempt, Call, Endpoint, Outcome, Reply
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama import requests as ollama_requests
from corral.conversation.ollama.requests import OllamaDefaults
from corral.conversation.ollama.streams import NDJSONReader
from corral.conversation.surfaces import StreamWriter, stream_reply, write_events
from corral.errors import InvalidRequest, UpstreamError
from corral.httpclient import TooLarge, TransportError
from corral.providers import model_path
from corral.providers.upstream import stream_failure

if TYPE_CHECKING:
    from corral.config.schema import ProviderConfig
    from corral.httpclient import Response
    from corral.providers.ollama.provider import OllamaProvider

_PATHS = {Endpoint.CHAT: "chat", Endpoint.COMPLETION: "generate", Endpoint.EMBEDDING: "embed"}


def defaults(cfg: ProviderConfig) -> dict[Endpoint, OllamaDefaults]:
    """The provider's settings under every request, by endpoint; embedding models have their own
    context size, so only keep_alive carries over to them. Built once per provider."""
    generating = OllamaDefaults(keep_alive=cfg.keep_alive, num_ctx=cfg.num_ctx, options=dict(cfg.options))
    return {
        Endpoint.CHAT: generating,
        Endpoint.COMPLETION: generating,
        Endpoint.EMBEDDING: OllamaDefaults(keep_alive=cfg.keep_alive),
    }


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
    body = ollama_requests.write(
        req, attempt.model, defaults=provider.defaults[endpoint], num_ctx=attempt.num_ctx, stream=generating
    )
    path = provider.cfg.path(_PATHS[endpoint])
    # a stream's first-token deadline is the engine's, around this whole call
    resp = await provider.post(path, orjson.dumps(body), None if req.stream else attempt.first_byte_timeout)
    if not generating:
        data = provider.parse(await provider.read(resp))
        return model_path.reply_of(call, ollama_answers.read_embed(data), started)
    chat = endpoint is Endpoint.CHAT
    if not req.stream:
        data, first_at = await provider.aggregate(resp, attempt.first_byte_timeout, chat)
        reply = model_path.answered(call, ollama_answers.read(data), started)
        reply.outcome.first_token_at = first_at
        return reply
    reply, writer = stream_reply(call, started)
    reply.chunks = _stream(provider, resp, chat, writer, reply.outcome)
    return reply


def _content(events: list[Event]) -> bool:
    return any(isinstance(e, Delta) and (e.text or e.reasoning or e.tool_calls) for e in events)


async def _stream(
    provider: OllamaProvider, resp: Response, chat: bool, writer: StreamWriter, outcome: Outcome
) -> AsyncIterator[bytes]:
    """Ollama's NDJSON, read into the model's events and written for the client, one chunk per
    network read, in one generator (each layer of generators costs a few microseconds a read).
    Whole lines only, none over ``max_line_bytes``."""
    reader = NDJSONReader(chat=chat)
    limit = provider.cfg.max_line_bytes
    started = False  # content reached the client: a failure now goes in-band
    rest = b""  # the start of a line a read left unfinished
    try:
        try:
            async for data in resp.chunks():
                if rest:
                    data = rest + data
                cut = data.rfind(b"\n")
                rest = data[cut + 1 :]
                if cut < 0:
                    if len(rest) > limit:
                        raise TooLarge("a stream line", limit)
                    continue
                if cut > limit and any(len(line) > limit for line in data[:cut].split(b"\n")):
                    raise TooLarge("a stream line", limit)
                events: list[Event] = []
                for line in data[:cut].split(b"\n"):
                    if line:
                        events += reader.feed(line)
                        if reader.done:
                            break
                if not events:
                    if len(rest) > limit:
                        raise TooLarge("a stream line", limit)
                    continue
                if not started:
                    _check_first(provider, events)
                    started = _content(events)
                if reader.done:
                    await resp.settle()  # the end marker in, the connection back, before the last write
                chunk = write_events(writer, outcome, events)
                if chunk:
                    yield chunk
                if reader.done:
                    return
                if len(rest) > limit:  # after the whole lines before it went out
                    raise TooLarge("a stream line", limit)
            events = reader.feed(rest) + reader.end()
            if not started:
                if not _content(events) and not reader.done:
                    raise UpstreamError(
                        provider.name,
                        "ended the stream before its first token.",
                        code="upstream_stream_interrupted",
                    )
                _check_first(provider, events)
            yield write_events(writer, outcome, events)
        except (TransportError, TimeoutError) as exc:
            failure = stream_failure(provider.cfg, exc, started=started)
            if not started:
                raise failure from None
            yield write_events(
                writer, outcome, [Failure(failure.message, failure.code or "upstream_stream_interrupted")]
            )
    finally:
        if reader.done:
            resp.release()
        else:
            resp.close()


def _check_first(provider: OllamaProvider, events: list[Event]) -> None:
    """A failure in the stream's first events, before any content: raised, so the engine fails over."""
    failure = next((e for e in events if isinstance(e, Failure)), None)
    if failure is not None and not _content(events):
        raise UpstreamError(
            provider.name, f"failed before its first token: {failure.message}", code=failure.code
        )
