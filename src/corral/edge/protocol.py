"""One client connection of the lean server: parse (httptools, i.e. llhttp), serve hot routes,
hand everything else to aiohttp.

A request for a hot route (a POST to chat, completions or embeddings, on either surface) is
read whole, within the size limits, and its handler runs in a task; answers go back in request
order (pipelined requests wait their turn, at most ``MAX_QUEUED``). Any other request hands the
connection to aiohttp's protocol, which gets the request's raw bytes and keeps the connection
from then on. That needs the request to start at a read boundary, which is how clients that do
not pipeline send; a pipelined one that cannot be handed over is answered 400.

Limits before anything is buffered: the head (request line and headers) is capped at
``MAX_HEAD`` bytes and ``MAX_HEADERS`` fields (431), the body at the server's
``max_request_bytes`` (413, checked against Content-Length before reading, and counted while
reading a chunked body). Time limits are enforced by the server's sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

import httptools

from corral.edge import wire
from corral.edge.exchange import EdgeExchange
from corral.errors import CorralError, HeadTooLarge, InvalidRequest
from corral.http.errors import error_parts, internal_error
from corral.http.exchange import HotRoute, too_large
from corral.http.request_ids import id_headers

if TYPE_CHECKING:
    from corral.edge.server import EdgeServer

log = logging.getLogger("corral.edge")

MAX_HEAD = 64 * 1024
MAX_HEADERS = 128
MAX_QUEUED = 4  # complete pipelined requests held; past that, reading pauses


def _error(status: int, message: str) -> InvalidRequest:
    if status == 431:
        return HeadTooLarge(message, code="header_too_large")
    return InvalidRequest(message, code="bad_request")


class _Refused:
    """A request answered with an error without running a handler (too large, bad head...)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


class EdgeProtocol(asyncio.Protocol):
    def __init__(self, server: EdgeServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[tuple[HotRoute | _Refused, EdgeExchange]] = deque()
        self._busy = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading = True
        self._stash: list[bytes] = []  # bytes that arrived while the queue was full
        self._stop_parsing = False  # after a refusal that closes, or once handing over
        self._hand_over_raw: list[bytes] | None = None  # set: hand over once the queue is empty
        self._close_after = False
        self.closing = False
        # the message being read
        self.in_message = False
        self.in_head = False
        self._fresh = True
        self._chunk = b""
        self._raw: list[bytes] | None = None
        self._head_bytes = 0
        self._head_size = 0
        self._fields = 0
        self._url: list[bytes] = []
        self._path = ""  # the URL's path, once the head is complete
        self._headers: dict[str, str] = {}
        self._handler: HotRoute | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._discard = False
        # for the sweeper
        self.last_io = 0.0
        self.message_started = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is not a subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last_io = self._server.now()
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.connections.discard(self)
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the client closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_io = self._server.now()
        if self._hand_over_raw is not None:
            self._hand_over_raw.append(data)
            self._pause_reading()
            return
        if self._stop_parsing:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._stash.append(data)
            self._pause_reading()
            return
        if self.in_message:
            if self._raw is not None:
                self._raw.append(data)
            if self.in_head:
                self._head_bytes += len(data)
        self._fresh = not self.in_message
        self._chunk = data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self._stop_parsing:
                self._refuse_now(400, "Upgrade is not supported on this path.")
        except httptools.HttpParserError as exc:
            if not self._stop_parsing:
                self._refuse_now(400, f"The request is not valid HTTP/1.1 ({exc}).")
        self._chunk = b""
        if self.in_head and self._head_bytes > MAX_HEAD and not self._stop_parsing:
            # llhttp holds an unfinished header until it ends: bound what it can hold
            self._refuse_now(431, "The request head (request line and headers) is too large.")
        self._next()

    def eof_received(self) -> bool | None:
        if not self._busy and not self._queue:
            return None  # close now
        self._close_after = True
        return True  # answer what was asked, then close

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._stop_parsing:
            return
        self.in_message = True
        self.in_head = True
        self.message_started = self.last_io
        self._raw = [self._chunk] if self._fresh else None
        # a head that began inside this read holds at most the read; one that began after an
        # earlier message in it is counted from the next read on (bounded by one read more)
        self._head_bytes = len(self._chunk) if self._fresh else 0
        self._head_size = 0
        self._fields = 0
        self._url = []
        self._path = ""
        self._headers = {}
        self._handler = None
        self._body = []
        self._body_size = 0
        self._discard = False

    def on_url(self, url: bytes) -> None:
        if not self._stop_parsing:
            self._url.append(url)
            self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._stop_parsing:
            return
        self._fields += 1
        self._head_size += len(name) + len(value) + 4
        if self._fields > MAX_HEADERS or self._head_size > MAX_HEAD:
            self._discard = True
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self._stop_parsing:
            return
        path = self._path = b"".join(self._url).split(b"?", 1)[0].decode("latin-1")
        if self._discard:
            self._refuse_queued(
                431, f"The request head is over {MAX_HEAD} bytes or {MAX_HEADERS} fields.", close=True
            )
            return
        handler = self._server.routes.get(path) if self._parser.get_method() == b"POST" else None
        if handler is None:
            if self._raw is None:
                self._refuse_queued(
                    400,
                    "A pipelined request for this path cannot be served on this connection; "
                    "send it on its own connection or wait for the previous answer.",
                    close=True,
                )
            else:  # aiohttp gets the connection once the answers before this one are out
                self._hand_over_raw, self._raw = self._raw, None
                self._stop_parsing = True
            return
        self._raw = None
        if self._parser.should_upgrade():
            self._refuse_queued(400, "Upgrade is not supported on this path.", close=True)
            return
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._server.max_body:
            self._refuse_queued(413, "", close=True, length=int(length))
            return
        self._handler = handler
        if self._headers.get("expect", "").lower() == "100-continue" and not self._busy and not self._queue:
            self.send(wire.CONTINUE)

    def on_body(self, data: bytes) -> None:
        if self._handler is None:
            return
        self._body_size += len(data)
        if self._body_size > self._server.max_body:
            self._handler = None
            self._refuse_queued(413, "", close=True)
            return
        self._body.append(data)

    def on_message_complete(self) -> None:
        self._fresh = False  # a message that begins after this one in the same read is not at its start
        if self._stop_parsing and self._handler is None:
            return
        self.in_message = False
        handler = self._handler
        if handler is None:
            return
        self._handler = None
        keep = self._parser.should_keep_alive()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        ex = EdgeExchange(self._path, self._headers, body, self._server.app, self, keep)
        self._queue.append((handler, ex))
        if not keep:
            self._stop_parsing = True
            self._close_after = True

    # -- answering ---------------------------------------------------------------------------

    def _refuse_queued(self, status: int, message: str, *, close: bool, length: int | None = None) -> None:
        """Answer the current request with an error, in its turn; stop reading if ``close``."""
        exc = too_large(self._server.max_body, length) if status == 413 else _error(status, message)
        ex = EdgeExchange(self._path, self._headers, b"", self._server.app, self, keep_alive=not close)
        _, body, _ = error_parts(exc, ollama=self._path.startswith("/api/"))
        self._queue.append((_Refused(status, body), ex))
        self._handler = None
        self._raw = None
        if close:
            self._stop_parsing = True
            self._close_after = True

    def _refuse_now(self, status: int, message: str) -> None:
        """A request that cannot even be parsed: answer (if nothing else is being answered) and close."""
        self._stop_parsing = True
        self._close_after = True
        self._raw = None
        if self._busy or self._queue:
            return
        exc = _error(status, message)
        _, body, _ = error_parts(exc)
        self.send(wire.head(status, "application/json", {}, self.date(), len(body), False) + body)
        self.close()

    def _next(self) -> None:
        if self._busy:
            return
        if self._queue:
            handler, ex = self._queue.popleft()
            if isinstance(handler, _Refused):
                ex.answer(handler.status, handler.body, {})
                self._next()
                return
            self._busy = True
            self._server.track(asyncio.get_running_loop().create_task(self._run(handler, ex)))
            return
        if self._hand_over_raw is not None:
            self._hand_over()
        elif self._close_after or self.closing:
            self.close()
        elif self._stash:
            stash, self._stash = self._stash, []
            self._resume_reading()
            for data in stash:
                self.data_received(data)

    async def _run(self, handler: HotRoute, ex: EdgeExchange) -> None:
        try:
            await handler(ex)
            if not ex.started:  # a handler that wrote nothing: never leave the client waiting
                raise RuntimeError(f"the handler of {ex.path} wrote no answer")
        except CorralError as exc:
            try:
                self._fail(ex, exc)
            except Exception:
                self._internal(ex)
        except Exception:
            self._internal(ex)
        finally:
            self._busy = False
            self.last_io = self._server.now()  # keep-alive idle time counts from the answer's end
            if not ex.keep_alive or self.closing:  # the answer said Connection: close
                self._close_after = True
                self._queue.clear()
            if self._transport is not None:
                self._next()

    def _internal(self, ex: EdgeExchange) -> None:
        log.exception("unhandled error on POST %s (request %s)", ex.path, ex.request_id)
        ex.keep_alive = False
        if not ex.started:
            ex.answer(500, internal_error(ex.request_id), id_headers(ex.request_id, ex.client_request_id))

    def _fail(self, ex: EdgeExchange, exc: CorralError) -> None:
        if ex.started:  # the head is out: all that is left is to end the connection
            ex.keep_alive = False
            return
        status, body, headers = error_parts(
            exc, ex.request_id, ollama=ex.path.startswith("/api/"), client_request_id=ex.client_request_id
        )
        ex.answer(status, body, headers)

    def _hand_over(self) -> None:
        raw, self._hand_over_raw = self._hand_over_raw, None
        transport = self._transport
        if transport is None or raw is None:
            return
        self._server.connections.discard(self)
        other = self._server.aiohttp_protocol()
        transport.set_protocol(other)
        other.connection_made(transport)
        if not self._reading:
            transport.resume_reading()
        other.data_received(b"".join(raw))

    # -- used by the exchange and the server ---------------------------------------------------

    def date(self) -> str:
        return self._server.clock.date()

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)

    async def drain(self) -> None:
        if not self._write_paused:
            return
        if self._transport is None:
            raise ConnectionResetError("the client closed the connection")
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    @property
    def busy(self) -> bool:
        """An answer is being made or written."""
        return self._busy

    @property
    def idle(self) -> bool:
        """Between requests: nothing being read, answered or waiting."""
        return not (self.in_message or self._busy or self._queue or self._hand_over_raw is not None)

    def shut(self) -> None:
        """The server is stopping: close now if idle, else after the answer in progress."""
        self.closing = True
        if self.idle:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._transport is not None:
            self._reading = True
            self._transport.resume_reading()
