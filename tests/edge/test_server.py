"""EdgeServer's time limits (driven with a fake clock and explicit sweeps) and its shutdown."""

from __future__ import annotations

import asyncio
import time

import pytest

from corral.edge.server import BODY_TIMEOUT, HEAD_TIMEOUT, KEEPALIVE_TIMEOUT
from tests.edge.harness import Edge, eventually, get, post

START = 1000.0


class Clock:
    """What ``server.now`` returns; the background sweeper sees it too, so time only moves when a
    test moves it."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock(edge: Edge) -> Clock:
    edge.server.now = fake = Clock()
    return fake


def reading_head(edge: Edge) -> bool:
    return any(conn.in_head for conn in edge.server.connections)


def reading_body(edge: Edge) -> bool:
    return any(conn.in_message and not conn.in_head for conn in edge.server.connections)


# -- the sweeper ------------------------------------------------------------------------------


async def test_unfinished_head_is_cut_after_head_timeout_not_before(edge: Edge, clock: Clock) -> None:
    client = await edge.connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\n")
    await eventually(lambda: reading_head(edge))
    edge.server.sweep(START + HEAD_TIMEOUT - 0.5)
    assert await client.silent()
    await client.send(b"Content-Length: 2\r\n\r\nhi")
    assert (await client.response()).json()["body"] == "hi"

    slow = await edge.connect()
    await slow.send(b"POST /echo HTTP/1.1\r\n")
    await eventually(lambda: reading_head(edge))
    clock.at = START + 20  # bytes keep coming, but the head as a whole is late
    await slow.send(b"Host: test\r\n")
    await asyncio.sleep(0.01)
    edge.server.sweep(START + HEAD_TIMEOUT + 0.5)
    assert await slow.closed()
    assert await client.silent()  # the idle one is not due yet
    assert (await client.request(post("/echo", b"again"))).status == 200


async def test_stalled_body_is_cut_after_body_timeout_without_data(edge: Edge, clock: Clock) -> None:
    client = await edge.connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n01234")
    await eventually(lambda: reading_body(edge))
    edge.server.sweep(START + BODY_TIMEOUT - 1)
    assert await client.silent()
    clock.at = START + 50
    await client.send(b"56")
    await eventually(lambda: any(conn.last_io == START + 50 for conn in edge.server.connections))
    edge.server.sweep(START + BODY_TIMEOUT + 1)  # 11 s since the last bytes: fine
    assert await client.silent()
    edge.server.sweep(START + 50 + BODY_TIMEOUT + 1)
    assert await client.closed()
    assert edge.calls == []


async def test_idle_keep_alive_is_closed_after_keepalive_timeout(edge: Edge, clock: Clock) -> None:
    client = await edge.connect()
    assert (await client.request(post("/echo"))).status == 200
    edge.server.sweep(START + KEEPALIVE_TIMEOUT - 1)
    assert await client.silent()
    edge.server.sweep(START + KEEPALIVE_TIMEOUT + 1)
    assert await client.closed()


async def test_connection_that_never_sends_is_closed_after_keepalive_timeout(
    edge: Edge, clock: Clock
) -> None:
    client = await edge.connect()
    await eventually(lambda: len(edge.server.connections) == 1)
    edge.server.sweep(START + KEEPALIVE_TIMEOUT - 1)
    assert await client.silent()
    edge.server.sweep(START + KEEPALIVE_TIMEOUT + 1)
    assert await client.closed()


async def test_answer_in_progress_is_never_swept(edge: Edge, clock: Clock) -> None:
    client = await edge.connect()
    await client.send(post("/wait"))
    await edge.entered.wait()
    edge.server.sweep(START + 10 * KEEPALIVE_TIMEOUT)
    assert await client.silent()
    edge.release.set()
    assert (await client.response()).body == b'{"waited":true}'


async def test_keep_alive_time_starts_when_the_answer_is_done(edge: Edge, clock: Clock) -> None:
    client = await edge.connect()
    await client.send(post("/wait"))
    await edge.entered.wait()
    clock.at = START + 100  # a long answer (a stream of 100 s, say)
    edge.release.set()
    assert (await client.response()).status == 200
    edge.server.sweep(START + 100.5)  # idle for half a second
    assert await client.silent()
    assert (await client.request(post("/echo", b"next"))).status == 200


async def test_a_request_queued_behind_a_long_answer_does_not_cut_it(edge: Edge, clock: Clock) -> None:
    client = await edge.connect()
    await client.send(post("/wait"))
    await edge.entered.wait()
    await client.send(get("/cold"))
    await eventually(lambda: any(conn.queued for conn in edge.server.connections))
    edge.server.sweep(START + BODY_TIMEOUT + 1)  # the hot answer has run for 61 s
    edge.release.set()
    assert (await client.response()).body == b'{"waited":true}'
    assert (await client.response()).body == b"cold"


# -- close(timeout) ---------------------------------------------------------------------------


async def test_close_closes_idle_connections_and_refuses_new_ones(edge: Edge) -> None:
    idle = await edge.connect()
    assert (await idle.request(post("/echo"))).status == 200
    fresh = await edge.connect()
    async with asyncio.timeout(2):
        await edge.server.close(1.0)
    assert await idle.closed()
    assert await fresh.closed()
    with pytest.raises(ConnectionRefusedError):
        await edge.connect()


async def test_close_lets_an_answer_in_progress_finish(edge: Edge) -> None:
    busy = await edge.connect()
    idle = await edge.connect()
    assert (await idle.request(post("/echo"))).status == 200
    await busy.send(post("/wait"))
    await edge.entered.wait()
    closing = asyncio.create_task(edge.server.close(2.0))
    assert await idle.closed()
    with pytest.raises(ConnectionRefusedError):
        await edge.connect()
    assert not closing.done()
    edge.release.set()
    response = await busy.response()
    assert response.status == 200 and response.body == b'{"waited":true}'
    assert response.headers["connection"] == "close"
    assert await busy.closed()
    async with asyncio.timeout(1):
        await closing


async def test_close_does_not_serve_queued_requests_after_connection_close(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/wait") + post("/echo", b"queued"))
    await edge.entered.wait()
    closing = asyncio.create_task(edge.server.close(2.0))
    await asyncio.sleep(0.01)
    edge.release.set()
    response = await client.response()
    assert response.headers["connection"] == "close"
    await closing
    assert await client.rest() == b""  # nothing after an answer that said Connection: close
    assert edge.calls == ["/wait"]


async def test_close_cuts_a_stuck_answer_after_the_timeout(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/wait"))
    await edge.entered.wait()
    began = time.monotonic()
    await edge.server.close(0.1)
    assert 0.09 <= time.monotonic() - began < 1.0
    assert await client.closed()  # cut, nothing written


async def test_close_cuts_a_stream_and_closes_its_iterator(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/stream-forever"))
    await client.reader.readuntil(b"4\r\ntick\r\n")
    await edge.server.close(0.05)
    await eventually(lambda: edge.finished == ["stream-forever"])
    rest = await client.rest()
    assert not rest.endswith(b"0\r\n\r\n")
