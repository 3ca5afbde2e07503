"""Answers in the model written for each surface's client, and what the outcome learns."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from corral.conversation.answer import Answer, Delta, Event, Failure, Finish, Usage
from corral.conversation.call import Call, Endpoint, Reply, Surface
from corral.conversation.surfaces import SURFACES, reply_of, request_of


def make_call(surface: Surface, *, stream: bool = True) -> Call:
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return Call(Endpoint.CHAT, body, orjson.dumps(body), "alias", stream, "r1", surface)


async def batches(*reads: list[Event]) -> AsyncIterator[list[Event]]:
    for read in reads:
        yield read


async def drain(reply: Reply) -> list[bytes]:
    assert reply.chunks is not None
    return [chunk async for chunk in reply.chunks]


def test_every_surface_has_an_adapter() -> None:
    assert set(SURFACES) == set(Surface)


def test_a_call_is_read_once() -> None:
    call = make_call(Surface.OLLAMA)
    assert request_of(call) is request_of(call)
    assert request_of(call).messages[0].text() == "hi"


@pytest.mark.parametrize("surface", list(Surface))
async def test_one_write_per_read_and_the_last_is_marked(surface: Surface) -> None:
    call = make_call(surface)
    reply = reply_of(call, batches([Delta("a"), Delta(" b")], [Delta(" c"), Finish("stop", Usage(3, 3))]), 0)
    chunks = await drain(reply)
    assert len(chunks) == 2
    assert reply.outcome.ended and reply.outcome.error is None
    assert reply.outcome.usage == Usage(3, 3)
    assert (reply.outcome.pieces, reply.outcome.chars) == (3, 5)


@pytest.mark.parametrize("surface", list(Surface))
async def test_a_failure_ends_the_stream_in_band(surface: Surface) -> None:
    reply = reply_of(make_call(surface), batches([Delta("par")], [Failure("broke"), Delta("late")]), 0)
    chunks = await drain(reply)
    assert b"broke" in chunks[-1] and b"late" not in b"".join(chunks)
    assert reply.outcome.error == "broke" and reply.outcome.ended


@pytest.mark.parametrize("surface", list(Surface))
async def test_a_stream_that_ends_without_its_end_is_reported_incomplete(surface: Surface) -> None:
    reply = reply_of(make_call(surface), batches([Delta("par")]), 0)
    chunks = await drain(reply)
    assert b"incomplete" in chunks[-1]
    assert reply.outcome.error is not None


def test_a_whole_answer_echoes_the_requested_model() -> None:
    for surface in Surface:
        reply = reply_of(
            make_call(surface, stream=False), Answer("hello", finish="stop", usage=Usage(1, 1)), 0
        )
        assert orjson.loads(reply.body or b"")["model"] == "alias"
        assert reply.outcome.usage == Usage(1, 1)
