"""Faults a cold review found in the pool and the connection, each pinned by a test that failed
before its fix: slot accounting when a connect is cancelled, waiters served in order, chunked
trailers, a reset mid close-delimited body, an HTTP 101 answer."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from corral.httpclient import BadResponse, Disconnected
from corral.httpclient.connection import Connection
from tests.httpclient.rawserver import Conn, answer, eventually

pytestmark = pytest.mark.timeout(20)


async def test_a_cancel_during_connect_frees_its_slot_once(serve, pool, monkeypatch) -> None:
    async def slow(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.path != "/cancelled":
                await asyncio.sleep(0.2)
            await conn.send(answer(b"ok"))

    server = await serve(slow)
    client = pool(server.url(), max_connections=1)
    victim: asyncio.Task[object] | None = None
    made = Connection.connection_made

    def made_then_cancelled(self: Connection, transport: asyncio.BaseTransport) -> None:
        made(self, transport)
        if victim is not None and not victim.done():
            victim.cancel()  # a deadline or a client disconnect landing in this very turn

    monkeypatch.setattr(Connection, "connection_made", made_then_cancelled)
    for _ in range(3):
        victim = asyncio.create_task(client.request("GET", "/cancelled"))
        with pytest.raises(asyncio.CancelledError):
            await victim
        await asyncio.sleep(0.05)
    victim = None
    await eventually(lambda: client._open == 0)
    before = server.accepted
    answers = await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(4)))
    for response in answers:
        assert await response.read() == b"ok"
    assert server.accepted - before == 1  # max_connections=1 still holds
    assert client._open == 1


async def test_waiters_are_served_in_order_not_starved_by_a_busy_client(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await asyncio.sleep(0.02)
            await conn.send(answer(b"ok"))

    server = await serve(handler)
    client = pool(server.url(), max_connections=1, connect_timeout=1.0)
    busy_served = 0

    async def busy() -> None:
        nonlocal busy_served
        for _ in range(30):
            response = await client.request("POST", "/busy", b"{}")
            await response.read()
            busy_served += 1

    async def other() -> int:
        await asyncio.sleep(0.005)
        response = await client.request("POST", "/other", b"{}")
        await response.read()
        return busy_served

    _, busy_before_other = await asyncio.gather(busy(), other())
    assert busy_before_other <= 2  # it waited one turn, not until the busy client was done


async def test_chunked_trailers_never_reach_the_next_answer_headers(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        first = True
        while await conn.read_request() is not None:
            if first:
                await conn.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\n{}\r\n0\r\nContent-Type: text/event-stream\r\nX-Trailer: abc\r\n\r\n"
                )
                first = False
            else:
                await conn.send(answer(b'{"ok":1}', headers="Content-Type: application/json\r\n"))

    server = await serve(handler)
    client = pool(server.url())
    one = await client.request("GET", "/one")
    assert await one.read() == b"{}"
    two = await client.request("GET", "/two")
    assert await two.read() == b'{"ok":1}'
    assert two.headers["content-type"] == "application/json"
    assert "x-trailer" not in two.headers and "x-trailer" not in one.headers
    assert server.accepted == 1


async def test_a_reset_cuts_a_close_delimited_body_short_with_an_error(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"choices": [{"te')
        await asyncio.sleep(0.05)
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        conn.writer.transport.abort()

    server = await serve(handler)
    response = await pool(server.url()).request("GET", "/x")
    with pytest.raises(Disconnected):
        await response.read()
    assert not response.complete


async def test_switching_protocols_is_a_bad_response(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        await asyncio.sleep(0.5)

    server = await serve(handler)
    client = pool(server.url())
    with pytest.raises(BadResponse, match="101"):
        await client.request("GET", "/x")
    await eventually(lambda: client._open == 0)
