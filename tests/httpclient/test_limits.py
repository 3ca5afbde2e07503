"""Read limits against hostile raw servers: an endless body (announced, close-delimited or
chunked), a trailer bomb (endless fields, or one endless field), headers and trailers counted
together, and an endless stream line. Each breach closes the connection (the server sees it go)
and frees the pool slot; nothing is gathered past the limit.
"""

from __future__ import annotations

import asyncio

import pytest

from corral.config.schema import ProviderConfig
from corral.errors import UpstreamError
from corral.httpclient import BadResponse, TooLarge
from corral.providers.ollama.provider import ndjson_batches
from corral.providers.upstream import LISTING_BYTES, Framer, make_pool, read_listing, upstream_errors
from tests.httpclient.rawserver import Conn, answer, eventually

pytestmark = pytest.mark.timeout(20)

CAP = 64 * 1024
BLOCK = b"x" * 8192


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Endless:
    """A handler that answers ``/`` with ``head`` then writes ``piece`` until the client closes
    the connection (or ``most`` bytes have gone out, so a client that never stops cannot hang
    the test); other paths get a small keep-alive answer."""

    def __init__(self, head: bytes, piece: bytes, most: int = 64 * 1024 * 1024) -> None:
        self.head = head
        self.piece = piece
        self.most = most
        self.written = 0
        self.cut = asyncio.Event()  # the client closed the connection mid-answer

    async def __call__(self, conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.path != "/":
                await conn.send(answer(b"small"))
                continue
            try:
                await conn.send(self.head)
                while self.written < self.most:
                    await conn.send(self.piece)
                    self.written += len(self.piece)
            except ConnectionError:
                self.cut.set()
                return
            await conn.wait_closed_by_client()
            self.cut.set()
            return


async def assert_cut_and_replaced(server, client, endless: Endless) -> None:
    """The server saw the connection go before it could write everything, the slot is free, and
    the next request gets a new connection."""
    await asyncio.wait_for(endless.cut.wait(), 5)
    assert endless.written < endless.most
    await eventually(lambda: client.in_use == 0)
    assert await (await client.request("GET", "/next")).read() == b"small"
    assert server.accepted == 2


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",  # ends at close
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n",
    ],
    ids=["close-delimited", "content-length"],
)
async def test_endless_body_stops_at_max_body(serve, pool, head) -> None:
    endless = Endless(head, BLOCK)
    server = await serve(endless)
    client = pool(server.url(), max_body=CAP)
    response = await client.request("GET", "/")
    with pytest.raises(TooLarge) as caught:
        await response.read()
    assert (caught.value.what, caught.value.limit) == ("an answer", CAP)
    assert str(caught.value) == f"an answer over {CAP} bytes"
    await assert_cut_and_replaced(server, client, endless)


async def test_endless_chunked_body_stops_at_max_body(serve, pool) -> None:
    endless = Endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk(BLOCK))
    server = await serve(endless)
    client = pool(server.url(), max_body=CAP)
    response = await client.request("GET", "/")
    with pytest.raises(TooLarge):
        await response.read()
    await assert_cut_and_replaced(server, client, endless)


async def test_content_length_over_the_cap_fails_before_reading(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (CAP + 1))
        await conn.wait_closed_by_client()  # the body never comes: only the length can tell

    server = await serve(handler)
    client = pool(server.url(), max_body=CAP)
    response = await client.request("GET", "/")
    with pytest.raises(TooLarge):
        await response.read()
    await eventually(lambda: 1 in server.closed)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_of_exactly_the_cap_is_read(serve, pool, framing) -> None:
    body = b"y" * CAP

    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            if framing == "chunked":
                await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for start in range(0, CAP, 10000):
                    await conn.send(chunk(body[start : start + 10000]))
                await conn.send(b"0\r\n\r\n")
            else:
                await conn.send(answer(body))

    server = await serve(handler)
    client = pool(server.url(), max_body=CAP)
    for _ in range(2):
        assert await (await client.request("GET", "/")).read() == body
    assert server.accepted == 1


async def test_max_bytes_of_one_read_overrides_the_pool(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(answer(b"z" * 2000))

    server = await serve(handler)
    client = pool(server.url(), max_body=CAP)
    with pytest.raises(TooLarge) as caught:
        await (await client.request("GET", "/")).read(max_bytes=1000)
    assert caught.value.limit == 1000
    assert await (await client.request("GET", "/")).read() == b"z" * 2000
    # a truncating read(limit) is not a breach
    assert await (await client.request("GET", "/")).read(10) == b"z" * 10


async def test_streamed_reader_is_not_capped(serve, pool) -> None:
    """``chunks()`` relays; only a whole-body read gathers, so only it is capped."""
    body = b"s" * (4 * CAP)

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(answer(body))
        await conn.wait_closed_by_client()

    server = await serve(handler)
    response = await pool(server.url(), max_body=CAP).request("GET", "/")
    assert b"".join([data async for data in response.chunks()]) == body


async def test_a_listing_is_read_to_the_smaller_fixed_cap_and_the_error_says_so(serve) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (LISTING_BYTES + 1))

    server = await serve(handler)
    cfg = ProviderConfig(name="up", type="ollama", base_url=server.url())  # 64 MiB for answers
    client = make_pool(cfg)
    try:
        response = await client.request("GET", "/api/tags")
        with pytest.raises(UpstreamError) as caught:
            async with upstream_errors(cfg):
                await read_listing(cfg, response)
    finally:
        await client.close()
    assert caught.value.code == "upstream_too_large"
    assert caught.value.message == (
        f"Upstream 'up' sent a model list or health answer over {LISTING_BYTES} bytes, more than "
        "corral reads for one. List the models to serve under providers[].models (no discovery "
        "then), or point providers[].paths at a smaller answer."
    )


# -- trailers ------------------------------------------------------------------------------

LAST_LINE = b'{"done":true}\n'


@pytest.mark.parametrize(
    "bomb",
    [b"X-Bomb: %s\r\n" % (b"b" * 100), b"b" * 8192],
    ids=["endless-fields", "one-endless-field"],
)
@pytest.mark.parametrize("reader", ["read", "chunks", "released"])
async def test_trailer_bomb_is_cut_at_the_head_cap(serve, pool, bomb, reader) -> None:
    """After ``0\\r\\n`` the upstream sends trailer bytes forever: they count against the 64 KiB
    of the head, and the connection goes once they pass it. A reader that already let the
    answer go (a drain) is cut the same way."""
    first = b"X-Bomb: " if bomb.startswith(b"b") else b""
    endless = Endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(LAST_LINE) + b"0\r\n" + first,
        bomb,
    )
    server = await serve(endless)
    client = pool(server.url(), read_timeout=10.0)
    response = await client.request("GET", "/")
    if reader == "read":
        with pytest.raises(BadResponse, match="headers and trailers are larger than 65536 bytes"):
            await response.read()
    elif reader == "chunks":
        got = []
        with pytest.raises(BadResponse, match="headers and trailers"):
            async for data in response.chunks():
                got.append(data)
        assert b"".join(got) == LAST_LINE
    else:
        async for data in response.chunks():
            assert data == LAST_LINE
            break
        response.release()  # the drain reads the trailer: it is cut at the cap, not at 1 s
    await assert_cut_and_replaced(server, client, endless)
    assert endless.written < 16 * 1024 * 1024


async def test_headers_and_trailers_count_together(serve, pool) -> None:
    """40 KiB of headers and 30 KiB of trailer: each under 64 KiB, together over it."""
    head_lines = b"".join(b"X-H-%d: %s\r\n" % (i, b"h" * 1000) for i in range(40))
    trailer = b"".join(b"X-T-%d: %s\r\n" % (i, b"t" * 1000) for i in range(30))

    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(
            b"HTTP/1.1 200 OK\r\n" + head_lines + b"Transfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n" + trailer + b"\r\n"
        )
        await conn.wait_closed_by_client()

    server = await serve(handler)
    response = await pool(server.url()).request("GET", "/")
    with pytest.raises(BadResponse, match="headers and trailers"):
        await response.read()
    await eventually(lambda: 1 in server.closed)


async def test_trailer_under_the_cap_is_dropped_and_the_connection_kept(serve, pool) -> None:
    trailer = b"".join(b"X-T-%d: %s\r\n" % (i, b"t" * 1000) for i in range(30))

    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + trailer + b"\r\n"
            )

    server = await serve(handler)
    client = pool(server.url())
    for _ in range(3):
        response = await client.request("GET", "/")
        assert await response.read() == b"ok"
        assert not any(name.startswith("x-t-") for name in response.headers)
    assert server.accepted == 1


async def test_many_tiny_chunks_are_not_mistaken_for_a_trailer(serve, pool) -> None:
    """Chunk framing is not trailer: 300 KiB of framing in one read is fine."""
    body = b"".join(chunk(b"%d" % (i % 10)) for i in range(60000))

    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")

    server = await serve(handler)
    client = pool(server.url())
    for _ in range(2):
        got = await (await client.request("GET", "/")).read()
        assert got == b"".join(b"%d" % (i % 10) for i in range(60000))
    assert server.accepted == 1


# -- stream lines --------------------------------------------------------------------------


async def test_endless_ndjson_line_stops_at_max_line(serve, pool) -> None:
    endless = Endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b'{"a":1}\n{"message":"'),
        chunk(BLOCK),
    )
    server = await serve(endless)
    client = pool(server.url())
    response = await client.request("GET", "/")
    batches = []
    try:
        with pytest.raises(TooLarge) as caught:
            async for lines in ndjson_batches(response.chunks(), CAP):
                batches.append(lines)
    finally:
        response.close()
    assert (caught.value.what, caught.value.limit) == ("a stream line", CAP)
    assert batches == [[b'{"a":1}']]
    await assert_cut_and_replaced(server, client, endless)


async def test_ndjson_total_is_capped_even_in_short_lines() -> None:
    async def lines():
        for _ in range(100):
            yield b'{"message":{"content":"x"}}\n' * 100

    with pytest.raises(TooLarge) as caught:
        async for _ in ndjson_batches(lines(), CAP, max_total=CAP):
            pass
    assert caught.value.what == "an answer"


@pytest.mark.parametrize(
    "pieces",
    [
        [b"a" * 100, b"a\n"],  # a long line ends inside the last read
        [b"a" * 60, b"a" * 60, b"\n"],  # one line over many reads
        [b"ok\n" + b"a" * 101],
    ],
)
async def test_ndjson_line_just_over_max_line_is_refused(pieces) -> None:
    async def content():
        for piece in pieces:
            yield piece

    with pytest.raises(TooLarge):
        async for _ in ndjson_batches(content(), 100):
            pass


async def test_ndjson_lines_at_max_line_pass() -> None:
    async def content():
        yield b"a" * 50
        yield b"a" * 50 + b"\n" + b"b" * 100
        yield b"\n" + b"c" * 100

    got = [lines async for lines in ndjson_batches(content(), 100)]
    assert got == [[b"a" * 100], [b"b" * 100], [b"c" * 100]]


def test_framer_passes_whole_lines_and_holds_the_rest() -> None:
    lines = Framer(10)
    whole = b'{"a":1}\n'
    assert lines.feed(whole) is whole  # the usual read: passed on as it is
    assert lines.feed(b"abc\nde") == b"abc\n"
    assert lines.held == 2
    assert lines.feed(b"f" * 8) == b""
    lines.check()  # 10 bytes held: at the limit, not over it
    assert lines.feed(b"\nxy") == b"de" + b"f" * 8 + b"\n"
    assert lines.rest() == b"xy"
    assert lines.feed(b"g" * 11) == b""
    with pytest.raises(TooLarge) as caught:
        lines.check()
    assert (caught.value.what, caught.value.limit) == ("a stream line", 10)


@pytest.mark.parametrize("blank", [b"\n\n", b"\r\n\r\n", b"\r\r", b"\n\r\n"])
def test_framer_cuts_sse_at_blank_lines_even_across_reads(blank) -> None:
    events = Framer(40, sse=True)
    event = b"data: " + b"e" * 20
    assert events.feed(event + blank[:1]) == b""  # the blank line straddles two reads
    assert events.feed(blank[1:] + b"data: next") == event + blank
    assert events.held == len(b"data: next")
    assert events.feed(b"\n") == b""  # a line end is not the end of an event
    assert events.feed(b"data: " + b"f" * 30) == b""
    with pytest.raises(TooLarge) as caught:
        events.check()  # one event of two lines, each under the limit, together over it
    assert caught.value.what == "a stream event"
