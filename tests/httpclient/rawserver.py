"""A raw HTTP/1.1 server for the client's tests: the test writes the exact bytes of each answer.

``RawServer`` runs ``handler(conn)`` for every accepted connection on 127.0.0.1 and counts the
connections, so a test can tell a reused keep-alive connection from a new one. ``Conn`` reads
requests as they arrived on the wire and notices when the client closes its side.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    head: bytes  # request line and headers, up to and including the blank line
    body: bytes

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def path(self) -> str:
        return self.line.split(" ")[1]

    @property
    def header_lines(self) -> list[str]:
        return [line for line in self.head.decode("latin-1").split("\r\n")[1:] if line]

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        found = []
        for line in self.header_lines:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                found.append(value.strip())
        return found


@dataclass
class Conn:
    """One accepted connection, as the handler sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int  # 1 for the first connection the server accepted
    requests: list[Request] = field(default_factory=list)

    async def read_request(self) -> Request | None:
        """The next request, or None when the client closed (or reset) the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        request = Request(head, b"")
        lengths = request.headers("content-length")
        if lengths:
            request.body = await self.reader.readexactly(int(lengths[0]))
        self.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_closed_by_client(self) -> None:
        """Return once the client has closed its side (EOF or reset); any bytes are dropped."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass


Handler = Callable[[Conn], Awaitable[None]]


def answer(body: bytes = b"ok", *, status: str = "200 OK", headers: str = "") -> bytes:
    """A complete Content-Length answer; ``headers`` are extra lines, each ending in CRLF."""
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


async def keep_answering(conn: Conn) -> None:
    """Answer every request on the connection with its own path, keep-alive."""
    while (request := await conn.read_request()) is not None:
        await conn.send(answer(request.path.encode()))


class RawServer:
    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.conns: list[Conn] = []
        self.closed: list[int] = []  # numbers of the connections whose handler has finished
        self.port = 0

    @property
    def accepted(self) -> int:
        return len(self.conns)

    @property
    def requests(self) -> list[Request]:
        return [request for conn in self.conns for request in conn.requests]

    def url(self, path: str = "", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def start(self, port: int = 0) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Conn(reader, writer, len(self.conns) + 1)
        self.conns.append(conn)
        try:
            await self._handler(conn)
        except ConnectionError:
            pass  # the client went away mid-write: the test looks at what the client saw
        finally:
            writer.close()
            self.closed.append(conn.number)
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            await self._server.wait_closed()


async def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``predicate()`` holds (a connection's close is noticed on a later loop turn)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
