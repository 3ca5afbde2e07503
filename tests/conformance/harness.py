"""The two sides the conformance tests drive: a recording edge (what each handler saw) with a raw
socket client that writes exact bytes and reads every answer until the server closes; and a
scripted upstream that writes exact answer bytes to corral's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from corral.core.call import Reply
from corral.edge.server import EdgeServer
from corral.http.exchange import Exchange
from corral.httpclient import Pool, TransportError
from tests.httpclient.rawserver import Conn, RawServer

TIMEOUT = 2.0  # for an answer (or the close) that should come at once
SECOND = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"


@dataclass
class Seen:
    """One request as its handler saw it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names, repeated ones joined with ", "
    body: bytes


@dataclass
class Recorder:
    """The handlers: every request they get is appended to ``seen``; each answer's body is
    the request's number on the connection, so answers can be matched to requests."""

    max_body: int
    seen: list[Seen] = field(default_factory=list)

    def _keep(self, ex: Exchange, body: bytes) -> None:
        self.seen.append(Seen(ex.method, ex.path, ex.query, dict(ex.headers), body))

    async def record(self, ex: Exchange) -> None:
        self._keep(ex, await ex.body(self.max_body))
        await ex.write(Reply(body=b"%d" % len(self.seen)))

    async def stream(self, ex: Exchange) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"one"
            yield b"two"

        self._keep(ex, await ex.body(self.max_body))
        await ex.write(Reply(chunks=chunks(), content_type="text/event-stream"))


@dataclass
class Answer:
    """One answer read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    seen: list[Seen]
    answers: list[Answer]  # final answers, in order (1xx ones are counted in ``interim``)
    interim: int
    reset: bool  # the connection ended with a reset rather than a close


@dataclass
class Edge:
    server: EdgeServer
    recorder: Recorder

    async def connect(self) -> Conversation:
        """A new raw connection (the recorder forgets what it saw before)."""
        self.recorder.seen.clear()
        _, client = await asyncio.get_running_loop().create_connection(
            Conversation, "127.0.0.1", self.server.port
        )
        return client

    async def converse(self, writes: list[bytes], expect: int, timeout: float = TIMEOUT) -> Outcome:
        """Write ``writes`` on a new connection; once every byte is written and ``expect``
        answers are in, half-close; return when the edge closes (which it must do by itself
        after an answer that says ``Connection: close``)."""
        conv = await self.connect()
        sender = asyncio.create_task(conv.send(writes))
        try:
            async with asyncio.timeout(timeout):
                await sender
                await conv.wait(lambda: conv.ended or conv.told_close() or len(conv.answers()) >= expect)
                if not conv.told_close():  # else the edge must close by itself
                    conv.half_close()
                await conv.wait(lambda: conv.ended)
        except TimeoutError:
            raise AssertionError(
                f"the edge neither answered nor closed within {timeout} s: answers "
                f"{conv.answers()}, handlers saw {self.recorder.seen}"
            ) from None
        finally:
            sender.cancel()
            conv.close()
        answers, rest = parse_answers(bytes(conv.data), closed=True)
        assert not rest, f"the edge sent bytes that are not a whole answer: {rest[:200]!r}"
        final = [a for a in answers if not 100 <= a.status < 200]
        return Outcome(list(self.recorder.seen), final, len(answers) - len(final), conv.reset)


class Conversation(asyncio.Protocol):
    """A raw client connection that keeps every byte the server sends (even when a reset ends
    the connection) and how the connection ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self.reset = False
        self._changed = asyncio.Event()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._changed.set()

    def eof_received(self) -> bool:
        self.ended = True
        self._changed.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.reset = exc is not None
        self._changed.set()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds, re-checked each time bytes arrive or the connection ends."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def answers(self) -> list[Answer]:
        """The final answers received so far (1xx ones left out)."""
        answers, _ = parse_answers(bytes(self.data), closed=False)
        return [a for a in answers if not 100 <= a.status < 200]

    def told_close(self) -> bool:
        """An answer so far said ``Connection: close``."""
        return any(a.headers.get("connection") == "close" for a in self.answers())

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing() and not self.ended:
            self._transport.write(data)

    async def send(self, writes: list[bytes]) -> None:
        for piece in writes:
            if self.ended:
                return
            self.write(piece)
            await asyncio.sleep(0)  # one write per piece, not a synchronisation

    def half_close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(OSError):
                self._transport.write_eof()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def parse_answers(data: bytes, *, closed: bool) -> tuple[list[Answer], bytes]:
    """The whole answers at the start of ``data`` (the last may end at the close when ``closed``),
    and the bytes after them."""
    answers: list[Answer] = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        version, status = [*lines[0].split(" ", 2), ""][:2]
        assert version == "HTTP/1.1", f"the edge answered with {lines[0]!r}"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        code, rest = int(status), data[end + 4 :]
        if 100 <= code < 200 or code in (204, 304):
            body = b""
        elif headers.get("transfer-encoding") == "chunked":
            parsed = _dechunk(rest)
            if parsed is None:
                break
            body, rest = parsed
        elif "content-length" in headers:
            size = int(headers["content-length"])
            if len(rest) < size:
                break
            body, rest = rest[:size], rest[size:]
        elif closed:
            body, rest = rest, b""
        else:
            break
        answers.append(Answer(code, headers, body))
        data = rest
    return answers, data


def _dechunk(data: bytes) -> tuple[bytes, bytes] | None:
    parts: list[bytes] = []
    while (line_end := data.find(b"\r\n")) >= 0:
        size = int(data[:line_end].split(b";")[0], 16)
        if size == 0:
            if data[line_end + 2 : line_end + 4] != b"\r\n":
                return None
            return b"".join(parts), data[line_end + 4 :]
        if len(data) < line_end + 2 + size + 2:
            return None
        parts.append(data[line_end + 2 : line_end + 2 + size])
        data = data[line_end + 2 + size + 2 :]
    return None


# -- the upstream side ------------------------------------------------------------------------


@dataclass
class Script:
    writes: list[bytes]  # the answer to the first request of a fetch
    keep: bool  # keep the connection open after it (and answer SECOND on it)


@dataclass
class Fetched:
    """What corral's client made of the scripted answer, and of a second request after it."""

    status: int | None  # None: the client raised ``error``
    headers: dict[str, str]
    body: bytes
    error: TransportError | None
    second: bytes | TransportError  # the body of the second answer, or its error
    connections: int  # how many connections the two requests used


class Upstream:
    """A raw loopback server: the first connection of each fetch gets the script's bytes for
    its first request; every other request is answered ``SECOND``."""

    def __init__(self) -> None:
        self.server = RawServer(self._serve)
        self._script: Script | None = None

    async def _serve(self, conn: Conn) -> None:
        script, self._script = self._script, None
        if script is not None:
            if await conn.read_request() is None:
                return
            for piece in script.writes:
                await conn.send(piece)
                await asyncio.sleep(0)  # one write per piece, not a synchronisation
            if not script.keep:
                return  # the server closes the connection
        while await conn.read_request() is not None:
            await conn.send(SECOND)

    async def fetch(self, script: Script) -> Fetched:
        self._script = script
        before = self.server.accepted
        pool = Pool(self.server.url(), max_connections=1, connect_timeout=TIMEOUT, read_timeout=1.0)
        try:
            status, headers, body, error = None, {}, b"", None
            try:
                response = await pool.request("GET", "/first")
                status, headers = response.status, dict(response.headers)
                body = await response.read()
            except TransportError as exc:
                status, error = None, exc
            second: bytes | TransportError
            try:
                again = await pool.request("GET", "/second")
                second = await again.read()
            except TransportError as exc:
                second = exc
            return Fetched(status, headers, body, error, second, self.server.accepted - before)
        finally:
            await pool.close()
