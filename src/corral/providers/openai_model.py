"""The OpenAI-compatible upstream adapter: a call from any surface but OpenAI's own (Ollama's API,
``/v1/messages``, ``/v1/responses``), read into the conversation model, written as the request an
OpenAI-compatible server takes, and its answer read back for the surface to write.

The request goes where ``conversation.openai.requests.write`` says: chat completions, the legacy
completions endpoint (a raw prompt or a suffix) or embeddings. A stream is read as the model's
events, one batch per network read, each event no longer than ``max_line_bytes``; the answer's
``Finish`` comes only once the body has ended cleanly (the reader holds ``[DONE]``), so a
connection that breaks after it is a ``Failure``, like any other break: before anything reached
the client it raises instead (the engine fails over). A call whose client wants a whole answer
is streamed all the same and folded (``conversation.fold``): the first-token deadline covers
the headers and the first events, and an answer that never finished raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from corral.conversation.answer import Delta, Event, Failure
from corral.conversation.call import Attempt, Call, Endpoint, Reply
from corral.conversation.fold import AnswerFold
from corral.conversation.openai import answers as openai_answers
from corral.conversation.openai import requests as openai_requests
from corral.conversation.openai.streams import SSEReader
from corral.conversation.request import Request
from corral.errors import UpstreamError
from corral.httpclient import TransportError
from corral.providers import model_path
from corral.providers.upstream import (
    JSON_BODY,
    Framer,
    incomplete,
    json_object,
    no_first_token,
    rejected,
    stream_failure,
    upstream_errors,
)

if TYPE_CHECKING:
    from corral.httpclient import Response
    from corral.providers.openai_compat import OpenAIProvider


async def send(provider: OpenAIProvider, call: Call, attempt: Attempt, path: str | None = None) -> Reply:
    """``call`` through the model; ``path`` overrides where the request goes."""
    started = model_path.now_ns()
    req = model_path.request_of(call)
    if provider.folds(call, attempt):
        return await _folded(provider, call, attempt, req, path, started)
    endpoint, body = openai_requests.write(req, attempt.model)
    async with upstream_errors(provider.cfg):
        resp = await provider.pool.request(
            "POST", path or provider.paths[endpoint], orjson.dumps(body), JSON_BODY
        )
    if resp.status >= 300:
        raise await rejected(provider.cfg, resp)
    if endpoint is Endpoint.EMBEDDING:
        data = json_object(provider.name, await _read(provider, resp))
        return model_path.reply_of(call, openai_answers.read_embeddings(data), started)
    if not req.stream:  # the last deployment to try: asked for whole
        data = json_object(provider.name, await _read(provider, resp))
        return model_path.answered(call, openai_answers.read(data), started)
    return model_path.reply_of(call, _events(provider, resp), started)


async def _folded(
    provider: OpenAIProvider, call: Call, attempt: Attempt, req: Request, path: str | None, started: int
) -> Reply:
    """A whole answer, streamed from the server and folded (``conversation.fold``) so the
    first-token deadline covers it: the headers and the first events by ``first_byte_timeout``."""
    endpoint, body = openai_requests.write(replace(req, stream=True), attempt.model)
    timeout = attempt.first_byte_timeout
    folded = AnswerFold()
    try:
        async with asyncio.timeout(timeout):
            async with upstream_errors(provider.cfg):
                resp = await provider.pool.request(
                    "POST", path or provider.paths[endpoint], orjson.dumps(body), JSON_BODY
                )
            if resp.status >= 300:
                raise await rejected(provider.cfg, resp)
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                data = json_object(provider.name, await _read(provider, resp))  # it would not stream
                return model_path.answered(call, openai_answers.read(data), started)
            batches = _events(provider, resp)
            failure = folded.add(await anext(batches, []))
            first_at = time.monotonic()
    except TimeoutError:
        raise no_first_token(provider.cfg, timeout) from None
    async with aclosing(batches):
        while failure is None and folded.finish is None:
            events = await anext(batches, None)
            if events is None:
                break
            failure = folded.add(events)
    if failure is not None:
        raise UpstreamError(provider.name, failure.message, code=failure.code)
    if folded.finish is None:
        raise incomplete(provider.name)
    reply = model_path.answered(call, folded.answer(), started)
    reply.outcome.first_token_at = first_at
    return reply


async def _read(provider: OpenAIProvider, resp: Response) -> bytes:
    try:
        async with upstream_errors(provider.cfg):
            return await resp.read()
    finally:
        resp.release()


def _content(events: list[Event]) -> bool:
    return any(isinstance(e, Delta) and (e.text or e.reasoning or e.tool_calls) for e in events)


def _check_first(provider: str, events: list[Event]) -> None:
    """A failure in a stream's first events, before any content: raised, so the engine fails over."""
    failure = next((e for e in events if isinstance(e, Failure)), None)
    if failure is not None and not _content(events):
        raise UpstreamError(provider, f"failed before its first token: {failure.message}", code=failure.code)


async def _events(provider: OpenAIProvider, resp: Response) -> AsyncGenerator[list[Event], None]:
    """The upstream's SSE read into the model's events, one batch per network read."""
    reader = SSEReader()
    frames = Framer(provider.cfg.max_line_bytes, sse=True)
    started = False  # content reached the client: a failure now goes in-band
    try:
        try:
            async for data in resp.chunks():
                whole = frames.feed(data)
                events = reader.feed(whole) if whole else []
                if events:
                    if not started:
                        _check_first(provider.name, events)
                        started = _content(events)
                    yield events
                    if reader.done:  # an error event: nothing more counts
                        return
                frames.check()  # after the whole events of this read went out
            events = reader.feed(frames.rest()) + reader.end()
            if not started:
                _check_first(provider.name, events)
            yield events
        except (TransportError, TimeoutError) as exc:
            failure = stream_failure(provider.cfg, exc, started=started)
            if not started:  # nothing reached the client: fail over
                raise failure from None
            yield [Failure(failure.message, failure.code or "upstream_stream_interrupted")]
    finally:
        if resp.complete:
            resp.release()
        else:
            resp.close()
