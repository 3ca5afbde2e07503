"""Serving a call through the conversation model: for a surface its upstream does not speak.

The surface reads the call once (``surfaces.request_of``), the upstream's adapter writes the
request in its API, and its answer (whole, or a stream read as the model's events) is written
back by the surface (``surfaces.reply_of``). A stream whose first read already failed, before
anything reached the client, raises instead, so the engine fails over to the next deployment.

Used by the Ollama and OpenAI-compatible providers for the ``/v1/messages`` and
``/v1/responses`` surfaces (``MODEL_SURFACES``), and by the ``anthropic`` provider type for
every surface but its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Final, Protocol

from corral.conversation.answer import Answer, Delta, Event, Failure
from corral.conversation.call import Call, Reply, Surface
from corral.conversation.ollama import requests as ollama_requests
from corral.conversation.request import Request
from corral.conversation.surfaces import reply_of, request_of
from corral.errors import InvalidRequest, UpstreamError
from corral.httpclient import TransportError

# the surfaces whose calls the Ollama and OpenAI-compatible providers answer through the model
MODEL_SURFACES: Final = frozenset({Surface.MESSAGES, Surface.RESPONSES})


class Reader(Protocol):
    """An upstream adapter's stream reader."""

    def feed(self, data: bytes) -> list[Event]: ...

    def end(self) -> list[Event]: ...


def ollama_body(
    req: Request, model: str, *, defaults: ollama_requests.OllamaDefaults, num_ctx: int | None
) -> dict[str, Any]:
    """The ``/api/chat`` body for ``req``; a forced tool choice, which Ollama cannot honour, is
    refused rather than ignored."""
    if req.tools and req.tool_choice is not None and req.tool_choice.strict:
        what = f"the tool {req.tool_choice.name!r}" if req.tool_choice.name else "a tool call"
        raise InvalidRequest(
            f"tool_choice forces {what}, which an Ollama upstream cannot enforce: use tool_choice "
            "'auto' (the model decides) or 'none', or route this model to an upstream that honours it.",
            param="tool_choice",
        )
    return ollama_requests.write(replace(req, stream=True), model, defaults=defaults, num_ctx=num_ctx)


def answered(call: Call, answer: Answer, started_ns: int) -> Reply:
    return reply_of(call, answer, started_ns)


def streamed(call: Call, provider: str, batches: AsyncIterator[list[Event]], started_ns: int) -> Reply:
    return reply_of(call, _checked_first(provider, batches), started_ns)


def check_first(provider: str, events: list[Event]) -> None:
    """Raise for a stream's first batch that fails before any content reached the client."""
    failure = next((e for e in events if isinstance(e, Failure)), None)
    if failure is not None and not any(
        isinstance(e, Delta) and (e.text or e.reasoning or e.tool_calls) for e in events
    ):
        raise UpstreamError(provider, failure.message, code=failure.code)


async def _checked_first(provider: str, batches: AsyncIterator[list[Event]]) -> AsyncIterator[list[Event]]:
    """The batches, but a failure in the first one with content still to come raises."""
    first = True
    try:
        async for events in batches:
            if first and events:
                failure = next((e for e in events if isinstance(e, Failure)), None)
                wrote = any(isinstance(e, Delta) and (e.text or e.reasoning or e.tool_calls) for e in events)
                if failure is not None and not wrote:
                    raise UpstreamError(provider, failure.message, code=failure.code)
                first = False
            yield events
    finally:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()


async def read_stream(
    chunks: AsyncIterator[bytes], reader: Reader, on_cut: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[list[Event]]:
    """An upstream's body, read by ``reader``: the events of each network read, then the end's."""
    try:
        async for data in chunks:
            events = reader.feed(data)
            if events:
                yield events
    except (UpstreamError, TransportError, TimeoutError, OSError) as exc:  # the body broke off
        yield [
            Failure(
                f"Upstream's stream broke off: {exc}; the answer is incomplete.",
                "upstream_stream_interrupted",
            )
        ]
        if on_cut is not None:
            await on_cut()
        return
    events = reader.end()
    if events:
        yield events


def now_ns() -> int:
    return time.monotonic_ns()


__all__ = [
    "MODEL_SURFACES",
    "answered",
    "check_first",
    "now_ns",
    "ollama_body",
    "read_stream",
    "reply_of",
    "request_of",
    "streamed",
]
