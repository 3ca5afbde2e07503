"""The client APIs corral serves, each as one adapter over the conversation model.

A surface adapter says how its API's requests are read into the model (``read``) and how an
answer, embeddings or the events of a stream are written back for its client (``answer``,
``embeddings``, ``stream``). ``SURFACES`` holds one per ``Surface``. The engine uses them for a
call that an upstream of another API answers: ``request_of`` reads the call (once, however many
upstreams are tried), the upstream adapter answers in the model, ``reply_of`` writes the answer in
the client's API. A call from the API an upstream speaks never comes here: it is passed through.
The error envelope of each surface is chosen at one place too, ``corral.http.errors``.

A stream comes from an upstream adapter as the model's events, a list per network read, and goes
out as one write per read: the last one with ``Outcome.ended``, so the edge sends it with the
stream's end marker. The outcome learns the usage (from the ``Finish``), the in-band error (from
a ``Failure``) and how much text went by (for an estimate when the upstream gives no usage).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from corral.conversation.answer import Answer, Delta, Embeddings, Event, Failure, Finish, Usage
from corral.conversation.anthropic.surface import MessagesSurface
from corral.conversation.call import Call, Endpoint, Outcome, Reply, Surface
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama import requests as ollama_requests
from corral.conversation.ollama.streams import NDJSONWriter
from corral.conversation.openai import answers as openai_answers
from corral.conversation.openai import requests as openai_requests
from corral.conversation.openai.streams import SSEWriter
from corral.conversation.request import Request
from corral.conversation.responses.surface import ResponsesSurface

# What an upstream adapter answers with: a whole answer, embeddings, or a stream's events (the
# events of one network read at a time).
Result = Answer | Embeddings | AsyncIterator[list[Event]]

_PREFIX = {Endpoint.CHAT: "chatcmpl-", Endpoint.COMPLETION: "cmpl-"}

__all__ = ["SURFACES", "Result", "SurfaceAdapter", "reply_of", "request_of", "stream_reply", "write_events"]


class StreamWriter(Protocol):
    done: bool

    def write(self, event: Event) -> bytes: ...


class SurfaceAdapter(Protocol):
    """One client API over the model."""

    surface: Surface
    stream_type: str  # the content type of its streams

    def read(self, endpoint: Endpoint, body: dict[str, Any]) -> Request: ...

    def answer(self, call: Call, answer: Answer, started_ns: int) -> bytes: ...

    def embeddings(self, call: Call, emb: Embeddings, started_ns: int) -> bytes: ...

    def stream(self, call: Call, started_ns: int) -> StreamWriter: ...


class OpenAISurface:
    surface = Surface.OPENAI
    stream_type = "text/event-stream"

    def read(self, endpoint: Endpoint, body: dict[str, Any]) -> Request:
        return openai_requests.read(endpoint, body)

    def answer(self, call: Call, answer: Answer, started_ns: int) -> bytes:
        write = (
            openai_answers.write_chat if call.endpoint is Endpoint.CHAT else openai_answers.write_completion
        )
        return orjson.dumps(write(answer, request_id=_id(call), model=call.model, created=int(time.time())))

    def embeddings(self, call: Call, emb: Embeddings, started_ns: int) -> bytes:
        fmt = call.body.get("encoding_format")
        return orjson.dumps(
            openai_answers.write_embeddings(
                emb, model=call.model, encoding_format=fmt if isinstance(fmt, str) else None
            )
        )

    def stream(self, call: Call, started_ns: int) -> StreamWriter:
        request = request_of(call)
        return SSEWriter(
            chat=call.endpoint is Endpoint.CHAT,
            request_id=_id(call),
            model=call.model,
            created=int(time.time()),
            include_usage=request.include_usage,
        )


class OllamaSurface:
    surface = Surface.OLLAMA
    stream_type = "application/x-ndjson"

    def read(self, endpoint: Endpoint, body: dict[str, Any]) -> Request:
        return ollama_requests.read(endpoint, body)

    def answer(self, call: Call, answer: Answer, started_ns: int) -> bytes:
        write = ollama_answers.write_chat if call.endpoint is Endpoint.CHAT else ollama_answers.write_generate
        return orjson.dumps(write(answer, model=call.model, started_ns=started_ns))

    def embeddings(self, call: Call, emb: Embeddings, started_ns: int) -> bytes:
        legacy = call.endpoint is Endpoint.LEGACY_EMBEDDING
        return orjson.dumps(
            ollama_answers.write_embed(emb, model=call.model, legacy=legacy, started_ns=started_ns)
        )

    def stream(self, call: Call, started_ns: int) -> StreamWriter:
        return NDJSONWriter(chat=call.endpoint is Endpoint.CHAT, model=call.model, started_ns=started_ns)


SURFACES: Mapping[Surface, SurfaceAdapter] = MappingProxyType(
    {
        Surface.OPENAI: OpenAISurface(),
        Surface.OLLAMA: OllamaSurface(),
        Surface.MESSAGES: MessagesSurface(),
        Surface.RESPONSES: ResponsesSurface(),
    }
)


def _id(call: Call) -> str:
    return _PREFIX.get(call.endpoint, "embd-") + f"{random.getrandbits(96):024x}"  # an id, not a secret


def request_of(call: Call) -> Request:
    """``call`` in the model, read by its surface once (however many upstreams are tried)."""
    request = call.request
    if request is None:
        request = call.request = SURFACES[call.surface].read(call.endpoint, call.body)
        request.stream = call.stream
    return request


def reply_of(call: Call, result: Result, started_ns: int) -> Reply:
    """An upstream adapter's answer, written in ``call``'s API."""
    surface = SURFACES[call.surface]
    if isinstance(result, Answer):
        reply = Reply(body=surface.answer(call, result, started_ns))
        reply.outcome.usage = result.usage
        reply.outcome.chars = len(result.text) + len(result.reasoning)
        return reply
    if isinstance(result, Embeddings):
        reply = Reply(body=surface.embeddings(call, result, started_ns))
        reply.outcome.usage = Usage(result.prompt_tokens, 0)
        return reply
    reply = Reply(content_type=surface.stream_type)
    reply.chunks = _written(result, surface.stream(call, started_ns), reply.outcome)
    return reply


def stream_reply(call: Call, started_ns: int) -> tuple[Reply, StreamWriter]:
    """For an adapter that writes its stream itself, in one generator (``write_events`` per
    read): the reply to fill and the writer of the client's API."""
    surface = SURFACES[call.surface]
    return Reply(content_type=surface.stream_type), surface.stream(call, started_ns)


def write_events(writer: StreamWriter, outcome: Outcome, events: list[Event]) -> bytes:
    """One read's events written for the client, and noted on ``outcome``: the text that went
    by, the usage (a ``Finish``), the in-band error (a ``Failure``); either ends the stream
    (``outcome.ended``: this is its last chunk)."""
    parts: list[bytes] = []
    for event in events:
        if type(event) is Delta:
            if event.text or event.reasoning:
                outcome.pieces += 1
                outcome.chars += len(event.text) + len(event.reasoning)
        elif isinstance(event, Finish):
            outcome.usage = event.usage
            outcome.ended = True
        elif isinstance(event, Failure):
            outcome.error = event.message
            outcome.ended = True
        data = writer.write(event)
        if data:
            parts.append(data)
        if writer.done:
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def unaccounted(writer: StreamWriter, outcome: Outcome) -> bytes:
    """The end of a stream an adapter left without a Finish or a Failure (a bug): the client must
    not take what it got for a whole answer."""
    failure = Failure("The upstream's stream ended unaccounted for; the answer is incomplete.")
    return write_events(writer, outcome, [failure])


async def _written(
    batches: AsyncIterator[list[Event]], writer: StreamWriter, outcome: Outcome
) -> AsyncIterator[bytes]:
    """The events of each read, written as one chunk; the one that ends the stream is marked."""
    try:
        async for events in batches:
            data = write_events(writer, outcome, events)
            if data:
                yield data
            if writer.done:
                return
        yield unaccounted(writer, outcome)
    finally:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()
