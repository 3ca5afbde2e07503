"""An EdgeServer in front of a small aiohttp app, with hot handlers written for the tests, and a
raw-socket client that writes exact bytes and parses the answers itself.

Hot routes (POST): ``/echo`` and ``/api/chat`` answer the request as JSON; ``/stream``,
``/stream-ended``, ``/stream-forever`` and ``/stream-fails`` answer chunked; ``/invalid``,
``/auth``, ``/api/invalid`` raise a ``CorralError``; ``/boom`` raises ``RuntimeError``;
``/silent`` writes nothing; ``/wait`` waits for ``release``; ``/bad-header`` and
``/bad-header-stream`` answer with a CR/LF in a header value; ``GET /cold`` answers "cold";
``/keyed`` (POST) needs ``Authorization: Bearer good``, checked from the head.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.core.call import Reply
from corral.edge.server import EdgeServer
from corral.errors import AuthenticationFailed, InvalidRequest
from corral.http.exchange import Exchange
from corral.http.routes import Route, RouteTable, surface_of_path
from corral.keys.principal import Principal

MAX_BODY = 1000
TIMEOUT = 2.0


def post(path: str, body: bytes = b"{}", *, headers: str = "", version: str = "1.1") -> bytes:
    """A POST with a Content-Length body; ``headers`` are extra lines, each ending in CRLF."""
    return (
        f"POST {path} HTTP/{version}\r\nHost: test\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode()
        + body
    )


def chunked_post(path: str, chunks: list[bytes], *, headers: str = "") -> bytes:
    framed = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n{headers}\r\n"
    return head.encode() + framed


def get(path: str, *, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode()


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    chunks: list[bytes] | None = None  # the chunks as framed, for a chunked answer

    def json(self) -> Any:
        return orjson.loads(self.body)


class Client:
    """One raw connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        async with asyncio.timeout(TIMEOUT):
            return await self._response()

    async def request(self, data: bytes) -> Response:
        await self.send(data)
        return await self.response()

    async def _response(self) -> Response:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, _ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        code = int(status)
        if code == 100:
            return Response(code, headers)
        if headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int(await self.reader.readuntil(b"\r\n"), 16)
                if size == 0:
                    assert await self.reader.readexactly(2) == b"\r\n"
                    return Response(code, headers, b"".join(chunks), chunks)
                data = await self.reader.readexactly(size + 2)
                assert data.endswith(b"\r\n")
                chunks.append(data[:-2])
        return Response(code, headers, await self.reader.readexactly(int(headers["content-length"])))

    async def rest(self) -> bytes:
        """Every byte until the server closes the connection (a reset counts as a close)."""
        received = b""
        async with asyncio.timeout(TIMEOUT):
            with contextlib.suppress(ConnectionError):
                while data := await self.reader.read(65536):
                    received += data
        return received

    async def closed(self) -> bool:
        """True once the server closed the connection without sending anything more."""
        return await self.rest() == b""

    async def silent(self, seconds: float = 0.05) -> bool:
        """True if nothing arrives (and the connection is not closed) for ``seconds``."""
        try:
            await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.writer.close()


@dataclass
class Edge:
    """The server under test, its handlers' state, and a way to connect."""

    max_body: int = MAX_BODY
    server: EdgeServer = field(init=False)
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # /wait started
    release: asyncio.Event = field(default_factory=asyncio.Event)  # /wait may answer
    finished: list[str] = field(default_factory=list)  # streams whose iterator was closed
    calls: list[str] = field(default_factory=list)  # paths of the hot handlers that ran
    clients: list[Client] = field(default_factory=list)
    port: int = 0  # kept: the server's own ``port`` is gone once it closed

    async def start(self) -> Edge:
        async def cold(ex: Exchange) -> None:
            self.calls.append(ex.path)
            await ex.write(Reply(body=b"cold", content_type="text/plain"))

        table = RouteTable(gate)
        table.add(["GET"], "/cold", Route(cold, access="open"))
        table.add(["POST"], "/keyed", Route(self.echo))
        routes: dict[str, Callable[[Exchange], Any]] = {
            "/echo": self.echo,
            "/api/chat": self.echo,
            "/stream": self.stream,
            "/stream-ended": self.stream_ended,
            "/stream-forever": self.stream_forever,
            "/stream-fails": self.stream_fails,
            "/invalid": self.invalid,
            "/api/invalid": self.invalid,
            "/auth": self.auth,
            "/boom": self.boom,
            "/silent": self.silent,
            "/wait": self.wait,
            "/bad-header": self.bad_header,
            "/bad-header-stream": self.bad_header_stream,
        }
        for path, handler in routes.items():
            table.add(["POST"], path, Route(handler, access="open", surface=surface_of_path(path)))
        self.server = EdgeServer(table, self.max_body)
        await self.server.start("127.0.0.1", 0)
        self.port = self.server.port
        return self

    async def stop(self) -> None:
        for client in self.clients:
            client.close()
        await self.server.close(1.0)

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = Client(reader, writer)
        self.clients.append(client)
        return client

    # -- hot handlers --------------------------------------------------------------------------

    async def echo(self, ex: Exchange) -> None:
        self.calls.append(ex.path)
        body = await ex.body(self.max_body)
        answer = {"path": ex.path, "body": body.decode("latin-1"), "headers": dict(ex.headers)}
        await ex.write(Reply(body=orjson.dumps(answer)))

    async def _stream(self, ex: Exchange, chunks: AsyncIterator[bytes], reply: Reply) -> None:
        self.calls.append(ex.path)
        reply.chunks = chunks
        await ex.write(reply)

    async def stream(self, ex: Exchange) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for data in (b"one", b"two", b"three"):
                yield data

        await self._stream(ex, chunks(), Reply(content_type="text/event-stream"))

    async def stream_ended(self, ex: Exchange) -> None:
        reply = Reply(content_type="text/event-stream")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b"first"
                reply.outcome.ended = True
                yield b"last"
                await asyncio.Event().wait()  # never: the answer must not wait for the iterator's end
                yield b"never"
            finally:
                self.finished.append("stream-ended")

        await self._stream(ex, chunks(), reply)

    async def stream_forever(self, ex: Exchange) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick"
                    await asyncio.sleep(0.005)
            finally:
                self.finished.append("stream-forever")

        await self._stream(ex, chunks(), Reply(content_type="text/event-stream"))

    async def stream_fails(self, ex: Exchange) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"one"
            await asyncio.sleep(0.01)
            raise RuntimeError("the upstream broke mid-stream")

        await self._stream(ex, chunks(), Reply(content_type="text/event-stream"))

    async def invalid(self, ex: Exchange) -> None:
        raise InvalidRequest("That request is wrong.", code="wrong_thing", param="messages")

    async def auth(self, ex: Exchange) -> None:
        raise AuthenticationFailed("No key.", code="missing_api_key")

    async def boom(self, ex: Exchange) -> None:
        raise RuntimeError("a bug")

    async def silent(self, ex: Exchange) -> None:
        self.calls.append(ex.path)

    async def wait(self, ex: Exchange) -> None:
        self.calls.append(ex.path)
        self.entered.set()
        await self.release.wait()
        await ex.write(Reply(body=b'{"waited":true}'))

    async def bad_header(self, ex: Exchange) -> None:
        await ex.write(Reply(body=b"{}", headers={"X-Model": "evil\r\nSet-Cookie: x=1"}))

    async def bad_header_stream(self, ex: Exchange) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"one"

        await ex.write(Reply(chunks=chunks(), headers={"X-Model": "evil\r\nSet-Cookie: x=1"}))


def gate(headers: Mapping[str, str], admin: bool) -> Principal:
    """The test key check: ``Authorization: Bearer good``."""
    if headers.get("authorization") != "Bearer good":
        raise AuthenticationFailed("No key.", code="missing_api_key")
    return Principal.master()


async def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
