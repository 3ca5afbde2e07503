"""Usage counted while streaming (issue #13): from the upstream's own figures where it gives them
(corral asks an OpenAI-type stream for them, and takes the extra chunk out again when the client
did not ask), else estimated from what was streamed and flagged, never from a byte tail. A
4,000-token streamed answer is booked as 4,000 tokens either way; an upstream that says 0 for an
answer that had text (llama-cpp-python ignores include_usage) is estimated, not booked as 0."""

from __future__ import annotations

import orjson
import pytest

from corral.accounting.tokens import usage_of
from corral.conversation.answer import Usage
from corral.conversation.call import Call, Endpoint, Surface
from tests.providers.conformance.harness import ALIAS, body_for, build, read
from tests.providers.conformance.upstreams import Behaviour

LONG = " ".join(f"w{i}" for i in range(4000))  # 4,000 pieces: a token each, as upstreams stream


async def booked(
    behaviour: Behaviour, surface: Surface = Surface.OPENAI, **extra: object
) -> tuple[Usage, bytes]:
    rig = build("openai", behaviour)
    body = body_for(surface, Endpoint.CHAT, True, **extra)
    c = Call(Endpoint.CHAT, body, orjson.dumps(body), ALIAS, True, "r", surface)
    reply = await rig.engine.handle(c)
    data = await read(reply)
    return usage_of(c, reply.outcome), data


async def test_the_upstreams_figures_for_a_long_stream_the_client_did_not_ask_usage_for() -> None:
    usage, data = await booked(Behaviour(text=LONG, usage=Usage(12, 4000)))
    assert usage == Usage(12, 4000)  # not estimated
    assert b'"usage"' not in data  # the chunk corral asked for itself is taken out again


async def test_the_client_that_asked_gets_the_usage_chunk() -> None:
    usage, data = await booked(
        Behaviour(text="a b", usage=Usage(3, 2)), stream_options={"include_usage": True}
    )
    assert usage == Usage(3, 2)
    assert b'"usage":{"prompt_tokens":3,"completion_tokens":2' in data


@pytest.mark.parametrize("mode", ["never", "zeros"])
async def test_no_figures_or_zeros_are_estimated_from_the_stream(mode: str) -> None:
    usage, _ = await booked(Behaviour(text=LONG, usage=Usage(12, 4000), stream_usage=mode))  # type: ignore[arg-type]
    assert usage.estimated
    assert usage.completion_tokens == 4000  # not 0, not the ~1,024 a 4 KiB tail gave
    assert usage.prompt_tokens > 0


async def test_an_interrupted_stream_books_what_was_streamed() -> None:
    usage, data = await booked(Behaviour(text=LONG, fault="drop", after=3001))
    assert b"incomplete" in data
    assert usage.estimated and usage.completion_tokens == 3001  # the pieces that came


async def test_through_the_model_the_figures_come_with_the_finish() -> None:
    usage, _ = await booked(Behaviour(text=LONG, usage=Usage(12, 4000)), Surface.OLLAMA)
    assert usage == Usage(12, 4000)
    usage, _ = await booked(Behaviour(text=LONG, usage=Usage(12, 4000), stream_usage="zeros"), Surface.OLLAMA)
    assert usage.estimated and usage.completion_tokens == 4000
