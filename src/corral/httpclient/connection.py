"""One keep-alive HTTP/1.1 connection to an upstream, as an asyncio protocol.

It carries one request at a time: ``send`` writes the request in one go and waits for the
answer's headers; httptools then feeds the body to the ``Response``. When the body is complete
and both sides allow keep-alive, the connection goes back to its pool at once, so a reader that
is slow to drain its buffer never holds a connection.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from corral.httpclient.errors import BadResponse, Disconnected, ReadTimeout, TransportError
from corral.httpclient.response import Response

if TYPE_CHECKING:
    from corral.httpclient.pool import Pool

MAX_HEADER_BYTES = 64 * 1024
DRAIN_SECONDS = 1.0  # how long a released, unfinished answer may take to end
DRAIN_BYTES = 256 * 1024  # and how much more of it is read and dropped


class Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._head_received = 0  # bytes received while waiting for the end of the headers
        self._error: TransportError | None = None  # raised inside a parser callback
        self._waiter: asyncio.Future[Response] | None = None  # waiting for the headers
        self._response: Response | None = None  # receiving its body
        self._read_timeout: float | None = None
        self._informational = False
        self._got_bytes = False
        self._paused = False
        self._draining: asyncio.TimerHandle | None = None
        self._drained = 0
        self.closed = False
        self.counted = True  # holds one of the pool's slots until forgotten
        self._in_head = False  # between the start of an answer and the end of its headers
        self.requests = 0  # sent on this connection so far
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadResponse("the upstream switched protocols (HTTP 101), which corral does not speak"))
            self.abandon()
            return
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised; such an error says more than its wrapper.
            error, self._error = self._error, None
            self._fail(error or BadResponse(f"the upstream sent malformed HTTP ({exc})"))
            self.abandon()
            return
        if self._waiter is not None:  # the headers are still incomplete
            self._head_received += len(data)
            if self._head_received > MAX_HEADER_BYTES:
                self._fail(BadResponse(f"the upstream's headers are larger than {MAX_HEADER_BYTES} bytes"))
                self.abandon()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if exc is None and response is not None and not response.complete and self._ends_at_close():
            # No Content-Length and not chunked: the body ends when the connection does.
            self._response = None
            response.finish()
        else:
            where = "before answering" if self._response is None else "in the middle of its answer"
            self._fail(
                Disconnected(
                    f"the upstream closed the connection {where}", before_response=not self._got_bytes
                )
            )
        self._pool.forget(self)

    def pause_writing(self) -> None:  # a request body is written at once; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._headers = {}
        self._header_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer: not part of the answer's headers
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            self._error = BadResponse(f"the upstream's headers are larger than {MAX_HEADER_BYTES} bytes")
            raise self._error
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self._parser.get_status_code()
        headers, self._headers, self._header_bytes = self._headers, {}, 0
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): skip it
            self._informational = True
            return
        waiter = self._waiter
        self._waiter = None
        if waiter is None or waiter.done():  # an answer nobody asked for, or asked and gave up
            self._error = BadResponse("the upstream answered a request that was not pending")
            raise self._error
        self._response = Response(status, headers, self, self._read_timeout, self._loop)
        waiter.set_result(self._response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response.feed(body)
        elif self._draining is not None:
            self._drained += len(body)
            if self._drained > DRAIN_BYTES:
                self.abandon()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        response, self._response = self._response, None
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
        keep = self._parser.should_keep_alive() and not self.closed
        if response is not None:
            response.finish()
        self.resume()
        if keep:
            self._got_bytes = False
            self._pool.put_back(self)
        else:
            self.abandon()

    # -- used by the pool and the response -------------------------------------------------

    async def send(self, data: list[bytes], read_timeout: float | None) -> Response:
        """Write a request and wait for the answer's status and headers."""
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            raise Disconnected("the pooled connection had closed", before_response=True)
        self.requests += 1
        self._head_received = 0
        self._read_timeout = read_timeout
        waiter = self._waiter = self._loop.create_future()
        transport.writelines(data)
        timer = None
        if read_timeout is not None:
            timer = self._loop.call_later(read_timeout, self._headers_late, waiter)
        try:
            response: Response = await waiter
            return response
        except BaseException:
            # Timed out, failed or cancelled while the upstream still owes an answer: this
            # connection cannot carry another request.
            self.abandon()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _headers_late(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout(f"no answer from the upstream within {self._read_timeout:g} s"))

    def _ends_at_close(self) -> bool:
        response = self._response
        if response is None:
            return False
        headers = response.headers
        return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")

    def _fail(self, error: TransportError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        response, self._response = self._response, None
        if response is not None and not response.complete:
            response.fail(error)

    def pause(self) -> None:
        if not self._paused and self._transport is not None and not self.closed:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self.closed:
            self._paused = False
            self._transport.resume_reading()

    def drain(self) -> None:
        """The reader is done before the body is: drop the rest as it comes, then reuse."""
        if self.closed or self._response is None:
            return
        self._response = None
        self._drained = 0
        self._draining = self._loop.call_later(DRAIN_SECONDS, self.abandon)
        self.resume()

    def abandon(self) -> None:
        """Close now: the connection is mid-answer or broken, so it cannot be reused."""
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.abort()
