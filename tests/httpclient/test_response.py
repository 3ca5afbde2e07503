"""Reading answers: body framing, interim answers, malformed bytes, timeouts, backpressure, release.

Every server here is a raw ``asyncio.start_server`` handler writing exact HTTP/1.1 bytes.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from corral.httpclient import BadResponse, Disconnected, ReadTimeout, TransportError
from corral.httpclient.connection import DRAIN_SECONDS
from tests.httpclient.rawserver import Conn, answer, eventually, keep_answering

pytestmark = pytest.mark.timeout(20)


async def test_content_length_body(serve, pool) -> None:
    server = await serve(keep_answering)
    client = pool(server.url())
    response = await client.request("GET", "/hello/world")
    assert response.status == 200
    assert response.headers["content-length"] == "12"
    assert await response.read() == b"/hello/world"
    assert response.complete


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_chunked_body_streams_piece_by_piece(serve, pool) -> None:
    pieces = [b"hello ", b"chunked ", b"world"]
    got_piece = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            got_piece.clear()
            await conn.send(chunk(piece))
            await got_piece.wait()  # the next piece only once the client has read this one
        await conn.send(b"0\r\n\r\n")
        await conn.wait_closed_by_client()

    server = await serve(handler)
    response = await pool(server.url()).request("GET", "/")
    assert "content-length" not in response.headers
    received = []
    async for data in response.chunks():
        received.append(data)
        got_piece.set()
    assert received == pieces
    assert response.complete


async def test_chunked_body_through_read_then_connection_reused(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"a" * 10, request.path.encode(), b"z" * 3000):
                await asyncio.sleep(0.02)
                await conn.send(chunk(piece))
            await conn.send(b"0\r\n\r\n")

    server = await serve(handler)
    client = pool(server.url())
    for path in ("/one", "/two"):
        response = await client.request("GET", path)
        assert await response.read() == b"a" * 10 + path.encode() + b"z" * 3000
    assert server.accepted == 1


@pytest.mark.parametrize("connection_close", [True, False], ids=["connection-close", "no-header"])
async def test_close_delimited_body_ends_with_the_connection(serve, pool, connection_close) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        extra = b"Connection: close\r\n" if connection_close else b""
        await conn.send(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Type: text/plain\r\n\r\nfirst ")
        await asyncio.sleep(0.05)
        await conn.send(b"second")
        # the handler returns: the server closes the connection, which ends the body

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/")
    assert await response.read() == b"first second"
    assert response.complete
    again = await client.request("GET", "/")
    assert await again.read() == b"first second"
    assert server.accepted == 2


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"],
    ids=["100", "103"],
)
async def test_interim_answers_are_skipped(serve, pool, interim) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(interim)
            await asyncio.sleep(0.02)
            await conn.send(answer(b"created", status="201 Created", headers="X-Final: yes\r\n"))

    server = await serve(handler)
    client = pool(server.url())
    for _ in range(2):
        response = await client.request("POST", "/", b"{}")
        assert response.status == 201
        assert response.headers["x-final"] == "yes"
        assert "link" not in response.headers
        assert await response.read() == b"created"
    assert server.accepted == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not http\r\n\r\n",
        b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
    ids=["not-http", "bad-status", "bad-length", "bad-header"],
)
async def test_malformed_answer_is_bad_response(serve, pool, garbage) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(garbage)
        await conn.wait_closed_by_client()

    server = await serve(handler)
    client = pool(server.url())
    with pytest.raises(BadResponse):
        await client.request("GET", "/")
    await eventually(lambda: client.in_use == 0)  # the broken connection freed its slot
    assert server.accepted == 1


def filler_headers(count: int) -> bytes:
    return b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(count))


@pytest.mark.parametrize(
    "lines",
    [filler_headers(70), b"X-Huge: " + b"v" * (65 * 1024) + b"\r\n"],
    ids=["many-headers", "one-header"],
)
async def test_headers_over_64k_are_a_bad_response_that_says_so(serve, pool, lines) -> None:
    """The operator sees the limit, not httptools' generic callback error."""

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok")
        await conn.wait_closed_by_client()

    server = await serve(handler)
    with pytest.raises(BadResponse, match="larger than 65536 bytes"):
        await pool(server.url()).request("GET", "/")


async def test_headers_just_under_64k_are_accepted(serve, pool) -> None:
    lines = filler_headers(60)

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok")
        await conn.wait_closed_by_client()

    server = await serve(handler)
    response = await pool(server.url()).request("GET", "/")
    assert response.headers["x-filler-59"] == "v" * 1000
    assert await response.read() == b"ok"


async def test_endless_header_fails_before_read_timeout(serve, pool) -> None:
    """An upstream that streams one header line forever must not be buffered without bound:
    past 64 KiB of header bytes the answer is refused, without waiting for the line to end."""

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(200):  # 200 x 8 KiB = 1.6 MiB of one header value, and it goes on
            await conn.send(b"v" * 8192)
            await asyncio.sleep(0.001)
        await conn.wait_closed_by_client()

    server = await serve(handler)
    client = pool(server.url(), read_timeout=2.0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TransportError) as caught:
        await client.request("GET", "/")
    elapsed = asyncio.get_running_loop().time() - started
    assert isinstance(caught.value, BadResponse), f"got {caught.value!r} after {elapsed:.2f} s"


async def test_no_answer_is_read_timeout(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.wait_closed_by_client()  # never answers

    server = await serve(handler)
    client = pool(server.url(), read_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ReadTimeout) as caught:
        await client.request("GET", "/")
    elapsed = loop.time() - started
    assert isinstance(caught.value, TimeoutError)
    assert 0.25 <= elapsed < 1.5
    # the connection that still owed an answer is closed, not pooled
    await eventually(lambda: 1 in server.closed)
    assert client.in_use == 0


async def test_stall_mid_body_is_read_timeout(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await conn.wait_closed_by_client()  # the other 90 bytes never come

    server = await serve(handler)
    client = pool(server.url(), read_timeout=0.3)
    response = await client.request("GET", "/")
    received = []
    loop = asyncio.get_running_loop()
    with pytest.raises(ReadTimeout):
        async for data in response.chunks():
            received.append(data)
            started = loop.time()
    assert b"".join(received) == b"x" * 10
    assert 0.25 <= loop.time() - started < 1.5
    await eventually(lambda: 1 in server.closed)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_close_mid_body_is_disconnected(serve, pool, framing) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        if framing == "chunked":
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"x" * 10)
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        await conn.send(head)
        await asyncio.sleep(0.05)  # then the server closes the connection

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/")
    received = []
    with pytest.raises(Disconnected) as caught:
        async for data in response.chunks():
            received.append(data)
    assert caught.value.before_response is False
    assert b"".join(received) == b"x" * 10
    assert not response.complete
    assert client.in_use == 0


async def test_large_body_with_slow_reader_is_complete_and_bounded(serve, pool) -> None:
    body = os.urandom(16 * 1024 * 1024)
    sent_all = asyncio.Event()

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        sent_all.set()
        await conn.wait_closed_by_client()

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/")
    # The reader does not read for a while: the client stops reading the socket, so the
    # server cannot push the whole body into the client's memory.
    await asyncio.sleep(0.5)
    assert not sent_all.is_set()
    assert await response.read() == body
    await asyncio.wait_for(sent_all.wait(), 5)


async def test_slow_chunk_reader_gets_every_byte_in_order(serve, pool) -> None:
    body = os.urandom(4 * 1024 * 1024)

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await conn.wait_closed_by_client()

    server = await serve(handler)
    response = await pool(server.url()).request("GET", "/")
    received = []
    async for data in response.chunks():
        received.append(data)
        await asyncio.sleep(0.005)
    assert b"".join(received) == body


async def test_released_answer_whose_rest_never_comes_closes_after_the_drain_period(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.path == "/big":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
            else:
                await conn.send(answer(b"small"))

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/big")
    async for data in response.chunks():
        assert data == b"x" * 10
        break
    started = time.monotonic()
    response.release()
    await eventually(lambda: 1 in server.closed)  # the server saw the connection close
    assert time.monotonic() - started >= DRAIN_SECONDS * 0.9
    again = await client.request("GET", "/small")
    assert await again.read() == b"small"
    assert server.accepted == 2


async def test_released_answer_whose_rest_comes_soon_keeps_the_connection(serve, pool) -> None:
    """An Ollama stream's final chunk marker often follows its last line by a moment."""

    async def handler(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.path == "/stream":
                await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nlast\n\r\n")
                await asyncio.sleep(0.05)
                await conn.send(b"0\r\n\r\n")
            else:
                await conn.send(answer(b"small"))

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/stream")
    async for data in response.chunks():
        assert data == b"last\n"
        break
    response.release()
    await asyncio.sleep(0.1)
    again = await client.request("GET", "/small")
    assert await again.read() == b"small"
    assert server.accepted == 1 and not server.closed


async def test_closed_incomplete_answer_drops_the_connection_at_once(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/big")
    started = time.monotonic()
    response.close()
    await eventually(lambda: 1 in server.closed)
    assert time.monotonic() - started < DRAIN_SECONDS / 2


async def test_release_of_a_complete_body_keeps_the_connection(serve, pool) -> None:
    server = await serve(keep_answering)
    client = pool(server.url())
    async with client.get("/first") as response:
        assert await response.read() == b"/first"
    response.release()  # a second release is harmless
    assert client.in_use == 0
    async with client.get("/second") as response:
        assert await response.read() == b"/second"
    assert server.accepted == 1
    assert server.closed == []


async def test_read_with_limit_drops_the_rest_with_the_connection(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(answer(b"0123456789" * 100))

    server = await serve(handler)
    client = pool(server.url())
    response = await client.request("GET", "/")
    assert await response.read(25) == b"0123456789012345678901234"
    assert await (await client.request("GET", "/")).read() == b"0123456789" * 100


async def test_head_is_refused_rather_than_misread(serve, pool) -> None:
    """A HEAD answer announces a body it does not carry; the parser cannot be told, so the
    client refuses HEAD instead of waiting for bytes that never come."""

    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(answer(b"hello"))

    server = await serve(handler)
    client = pool(server.url(), read_timeout=0.5)
    with pytest.raises(ValueError, match="HEAD"):
        await client.request("HEAD", "/")
    assert server.accepted == 0
    assert await (await client.request("GET", "/")).read() == b"hello"
