"""One upstream answer: status and headers at once, the body as it arrives.

The connection feeds body bytes in; the reader takes them out with ``chunks()`` (everything
buffered so far, per wake-up) or ``read()``. Buffering is bounded: above ``HIGH_WATER`` bytes
unread, the connection stops reading from the socket until the reader catches up. A reader
waits at most ``read_timeout`` seconds for the next bytes. ``read()`` gathers a whole body, so it
stops at ``max_body`` bytes (the pool's, or its own ``max_bytes``): past it the connection is
closed and ``TooLarge`` raised; a ``Content-Length`` over it fails before a byte is read.
A reader that has what it wants before the body has ended (an NDJSON stream's last line, its end
marker a moment behind) calls ``settle()``: the end is awaited briefly, so the connection is back
in its pool before the reader's own client has its answer and sends the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from corral.httpclient.errors import ReadTimeout, TooLarge, TransportError

if TYPE_CHECKING:
    from corral.httpclient.connection import Connection

HIGH_WATER = 256 * 1024
SETTLE_SECONDS = 0.25  # how long ``settle()`` waits for the end of a body whose last line is in


class Response:
    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_loop",
        "_max_body",
        "_read_timeout",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        conn: Connection,
        read_timeout: float | None,
        loop: asyncio.AbstractEventLoop,
        max_body: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers  # names in lower case
        self._conn: Connection | None = (
            conn  # None once the body is complete (the connection is back in its pool)
        )
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._done = False
        self._error: TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._read_timeout = read_timeout
        self._loop = loop
        self._max_body = max_body

    # -- fed by the connection -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def finish(self) -> None:
        """The body is complete; the connection no longer belongs to this answer."""
        self._done = True
        self._conn = None
        self._wake()

    def fail(self, error: TransportError) -> None:
        self._error = error
        self._conn = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the reader ----------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self._done

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._conn is not None:
            self._conn.resume()
        return data

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = None
        if self._read_timeout is not None:
            timer = self._loop.call_later(self._read_timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout(f"no data from the upstream for {self._read_timeout:g} s"))
            self.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces it arrived in (joined when several arrived at once)."""
        while True:
            if self._chunks:
                yield self._take()
            elif self._error is not None:
                raise self._error
            elif self._done:
                return
            else:
                await self._wait()

    async def read(self, limit: int | None = None, *, max_bytes: int | None = None) -> bytes:
        """The whole body, or its first ``limit`` bytes (the rest is then dropped with the
        connection). Without ``limit``, a body over ``max_bytes`` (default: the pool's
        ``max_body``) raises ``TooLarge``, its connection closed."""
        cap = None if limit is not None else max_bytes if max_bytes is not None else self._max_body
        if cap is not None and self._announced() > cap:
            self.close()
            raise TooLarge("an answer", cap)
        parts: list[bytes] = []
        size = 0
        while not self._done or self._chunks:
            if self._chunks:
                data = self._take()
                parts.append(data)
                size += len(data)
                if limit is not None and size >= limit:
                    self.close()
                    return b"".join(parts)[:limit]
                if cap is not None and size > cap:
                    self.close()
                    raise TooLarge("an answer", cap)
            elif self._error is not None:
                raise self._error
            else:
                await self._wait()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _announced(self) -> int:
        """The body's Content-Length, or 0 when it has none (or a broken one: the parser
        refuses those)."""
        length = self.headers.get("content-length")
        return int(length) if length is not None and length.isdigit() else 0

    async def settle(self, seconds: float = SETTLE_SECONDS) -> None:
        """The reader is done but the body is not (its end marker, or a trailer, is on the way):
        wait up to ``seconds`` for the end, dropping what comes, then ``release()``. Once the
        body has ended the connection is already back in its pool; past ``seconds`` the rest
        drains as ``release()`` says."""
        loop = self._loop
        deadline = loop.time() + seconds
        while not self._done and self._error is None and self._conn is not None:
            if self._chunks:  # bytes after the last line the reader wanted: dropped
                self._chunks = []
                self._buffered = 0
                self._conn.resume()
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(left, _resolve, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                timer.cancel()
        self.release()

    def release(self) -> None:
        """Done with the answer. A complete one has already given its connection back. For an
        incomplete one the rest of the body is read and dropped, briefly and up to a bound, so
        the connection can be kept (an upstream often sends its final chunk marker a moment
        after the last line); past the bound it is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.drain()

    def close(self) -> None:
        """Done with the answer, which may be cut short: an incomplete one closes its connection
        at once (so an upstream still generating stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abandon()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
