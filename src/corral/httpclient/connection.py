"""One keep-alive HTTP/1.1 connection to an upstream, as an asyncio protocol.

It carries one request at a time: ``send`` writes the request in one go and waits for the
answer's headers; httptools then feeds the body to the ``Response``. When the body is complete
and both sides allow keep-alive, the connection goes back to its pool at once, so a reader that
is slow to drain its buffer never holds a connection.

Strictness, where llhttp is more lenient than RFC 9112 (and than h11): a status under 100, a
control byte but HTAB in the reason phrase, or a Transfer-Encoding other than exactly
``chunked`` (corral asks for ``identity`` and decodes no other coding) is a ``BadResponse``,
and the connection is closed; whitespace after a field value is not part of it (RFC 9112 §5.1),
but a tab after a Transfer-Encoding value is a ``BadResponse`` too (llhttp does not frame it).

Limits: an answer's header fields and its chunked trailer fields count together against
``MAX_HEADER_BYTES`` (trailers are read and dropped, never merged into the headers); a reused
connection with anything to read before its request is written (the server closed or reset it,
or sent bytes nobody asked for) is dropped without writing a byte.
"""

from __future__ import annotations

import asyncio
import select
from typing import TYPE_CHECKING

import httptools

from corral.httpclient.errors import BadResponse, Disconnected, ReadTimeout, TransportError
from corral.httpclient.response import Response

if TYPE_CHECKING:
    from corral.httpclient.pool import Pool

MAX_HEADER_BYTES = 64 * 1024  # header and trailer fields of one answer, together
DRAIN_SECONDS = 1.0  # how long a released, unfinished answer may take to end
DRAIN_BYTES = 256 * 1024  # and how much more of it is read and dropped
_OWS = (32, 9)  # SP, HTAB: whitespace after a field value is not part of it
# bytes a reason phrase may not hold (RFC 9112 §4: HTAB, SP, VCHAR, obs-text); llhttp ends the
# line at CR or LF and lets every other byte through
_NOT_IN_REASON = bytes([*range(9), *range(10, 32), 127])


class Connection(asyncio.Protocol):
    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._header_bytes = 0  # header fields of this answer
        self._trailer_bytes = 0  # its trailer fields, as httptools reports them
        self._trailer_raw = 0  # bytes of the reads spent wholly in its trailer
        self._chunk_open = False  # a chunk header came and no body byte since: maybe the trailer
        self._fed_body = False  # a body byte came in this read
        self._head_received = 0  # bytes received while waiting for the end of the headers
        self._poll: select.poll | None = None  # this socket alone, to see if it has bytes or EOF
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
        sock = transport.get_extra_info("socket")
        fileno = getattr(sock, "fileno", None)
        if fileno is not None and hasattr(select, "poll"):  # not on Windows: no check there
            self._poll = select.poll()
            self._poll.register(fileno(), select.POLLIN | select.POLLPRI)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        trailing = self._chunk_open
        self._fed_body = False
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
        elif trailing and self._chunk_open and not self._fed_body:
            # The whole read is trailer (a chunk's data would have come first): counted as it
            # comes, so one endless trailer field is stopped too, not only many fields.
            self._trailer_raw += len(data)
            if self._header_bytes + self._trailer_raw > MAX_HEADER_BYTES:
                self._fail(self._too_much_trailer())
                self.abandon()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._poll = None
        self._end_drain()
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
        self._header_bytes = self._trailer_bytes = self._trailer_raw = 0
        self._chunk_open = False

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        if not self._in_head:  # a chunked body's trailer: counted, then dropped
            self._trailer_bytes += size
            if self._header_bytes + self._trailer_bytes > MAX_HEADER_BYTES:
                self._error = self._too_much_trailer()
                raise self._error
            return
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._error = BadResponse(f"the upstream's headers are larger than {MAX_HEADER_BYTES} bytes")
            raise self._error
        if value and value[-1] in _OWS:
            stripped = value.rstrip(b" \t")
            if b"\t" in value[len(stripped) :] and name.lower() == b"transfer-encoding":
                # llhttp's coding parser takes SP after "chunked", not HTAB: it frames the body
                # as an unknown coding read to the close, which the value without the tab denies
                self._error = BadResponse(
                    "the upstream sent a tab after its Transfer-Encoding, which is then not framed chunked"
                )
                raise self._error
            value = stripped
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_status(self, reason: bytes) -> None:
        if not reason.isalpha() and reason.translate(None, _NOT_IN_REASON) != reason:  # "OK" at once
            self._error = BadResponse(f"the upstream's reason phrase {reason!r} has a control byte")
            raise self._error

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self._parser.get_status_code()
        headers, self._headers = self._headers, {}
        if status < 100:  # llhttp reads any three digits
            self._error = BadResponse(f"the upstream answered with status {status:03d}, which is not HTTP's")
            raise self._error
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            # llhttp frames "gzip, chunked" as chunked and "gzip" as read to the close: either
            # way the body would be handed over still coded
            self._error = BadResponse(
                f"the upstream sent Transfer-Encoding {coding!r}; corral reads chunked or no coding"
            )
            raise self._error
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): skip it
            self._informational = True
            return
        waiter = self._waiter
        self._waiter = None
        if waiter is None or waiter.done():  # an answer nobody asked for, or asked and gave up
            self._error = BadResponse("the upstream answered a request that was not pending")
            raise self._error
        self._response = Response(status, headers, self, self._read_timeout, self._loop, self._pool.max_body)
        waiter.set_result(self._response)

    def on_chunk_header(self) -> None:
        self._chunk_open = True

    def on_body(self, body: bytes) -> None:
        self._chunk_open = False
        self._fed_body = True
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
        self._chunk_open = False
        self._end_drain()
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
        if transport is None or self.closed or transport.is_closing() or (self.requests and self._readable()):
            # Nothing written: the request may go on another connection, whatever its method.
            self.abandon()
            raise Disconnected("the pooled connection had closed", before_response=True, request_sent=False)
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

    def _readable(self) -> bool:
        """True if the idle socket has anything to read: EOF, a reset or unasked-for bytes. The
        loop may not have seen it yet (it came in this very turn); the kernel has."""
        poll = self._poll
        return poll is not None and bool(poll.poll(0))

    def _too_much_trailer(self) -> BadResponse:
        return BadResponse(f"the upstream's headers and trailers are larger than {MAX_HEADER_BYTES} bytes")

    def _ends_at_close(self) -> bool:
        response = self._response
        if response is None:
            return False
        headers = response.headers
        return "content-length" not in headers and "transfer-encoding" not in headers  # it is chunked

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
        """The reader is done before the body is: drop the rest as it comes, then reuse. Until
        the rest has come the pool counts the connection as draining: a request may wait for
        it rather than open another (an upstream's end marker is often a moment behind)."""
        if self.closed or self._response is None:
            return
        self._response = None
        self._drained = 0
        self._draining = self._loop.call_later(DRAIN_SECONDS, self.abandon)
        self._pool.draining += 1
        self.resume()

    def _end_drain(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
            self._pool.draining -= 1

    def abandon(self) -> None:
        """Close now: the connection is mid-answer or broken, so it cannot be reused."""
        self._end_drain()
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.abort()
