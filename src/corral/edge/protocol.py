"""One client connection of the data plane: parse (httptools, i.e. llhttp), check, route, answer.

Every request is matched against the route table when its head is complete; the key is checked
then, from the head alone, so nothing of a body is read (and no ``100 Continue`` is sent) for
a caller without a valid key: 401 and close. A routed request is read whole, within the limits,
and its handler runs in a task; answers go back in request order (pipelined requests wait
their turn, at most ``MAX_QUEUED``), and the next one is not started while the client has not
taken the previous answer (the transport's high-water mark).

Limits before anything is buffered (``corral.http.limits``): the head is capped at ``MAX_HEAD``
bytes and ``MAX_HEADERS`` fields (431), and so are chunked trailers, which are counted and
dropped, never merged into the headers; the body at the server's ``max_request_bytes`` (413,
checked against Content-Length before reading, and counted while reading a chunked body); all
bodies held at once at ``max_buffered_bytes`` (503). HTTP/1.1 needs exactly one Host; only
HTTP/1.0 and 1.1 are spoken (505); the request line has one SP between its parts, which llhttp
does not check (400, see ``corral.edge.offsets``); a header that must be single (Authorization,
X-API-Key, Host) given twice is refused (400). Time limits are enforced by the server's sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

import httptools

from corral.conversation.call import Surface
from corral.edge import wire
from corral.edge.exchange import EdgeExchange
from corral.edge.offsets import CRLF2, chunked_end, crlf2_end, skip_empty_lines
from corral.errors import (
    CodingNotImplemented,
    CorralError,
    HeadTooLarge,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServerBusy,
    VersionNotSupported,
)
from corral.http.errors import error_parts, internal_error
from corral.http.exchange import too_large
from corral.http.limits import CHUNK_OVERHEAD, MAX_HEAD, MAX_HEADERS, SINGLE_HEADERS
from corral.http.request_ids import id_headers
from corral.http.routes import Route, control_path, surface_of_path

if TYPE_CHECKING:
    from corral.edge.server import EdgeServer

log = logging.getLogger("corral.edge")

MAX_QUEUED = 4  # complete pipelined requests held; past that, reading pauses
_VERSIONS = ("1.1", "1.0")
_CR_LF = (13, 10)  # llhttp skips empty lines before a request


class _Refused:
    """A request answered with an error without running a handler (too large, bad head...)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers


class EdgeProtocol(asyncio.Protocol):
    def __init__(self, server: EdgeServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()  # made by the loop's server, in the loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[tuple[Route | _Refused, EdgeExchange]] = deque()
        self._task: asyncio.Task[None] | None = None  # the handler running now
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading = True
        self._stash: list[bytes] = []  # bytes that arrived while the queue was full
        self._stop_parsing = False  # after a refusal that closes
        self._close_after = False
        self.closing = False
        self.spoke = False  # a byte has arrived (a connection just accepted has sent nothing yet)
        self._held = 0  # body bytes this connection holds (counted in the server's total)
        # the message being read
        self.in_message = False
        self.in_head = False
        self._read = 0  # size of the read being parsed, and whether a message began in it fresh
        self._fresh = True
        self._head_bytes = 0
        self._head_size = 0
        self._fields = 0
        self._url: list[bytes] = []
        # where the request is in the reads (its request line is checked there, see ``offsets``)
        self._data = b""  # the read being parsed
        self._begin_at = 0  # where in it the feed began (one that begins after a body in it, else 0)
        self._start = b""  # the read the request began in
        self._start_at = 0  # and its offset there (-1: not known)
        self._head_copy: bytearray | None = None  # its head from its start, once it spans reads
        self._before = b""  # then the head's last 3 bytes before this read
        self._tail = b""  # the stream's last 3 bytes, while in a chunked body
        self._path = ""  # the URL's path, once the head is complete
        self._query = ""
        self._headers: dict[str, str] = {}
        self._duplicate: str | None = None  # a header that must be single, given twice
        self._route: Route | None = None
        self._ex: EdgeExchange | None = None  # the routed request whose body is being read
        self._body: list[bytes] = []
        self._body_size = 0
        self._after_head = 0  # bytes received since the head ended (body, framing, trailers)
        self._chunks = 0
        self._trailers = 0
        self._discard = False
        # for the sweeper
        self.last_io = 0.0  # the last byte received
        self.idle_since = 0.0  # the end of the last answer (or the connection's start)
        self.message_started = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is not a subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last_io = self.idle_since = self._server.now()
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.connections.discard(self)
        self._release_held()
        self._queue.clear()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the client closed the connection"))
        task = self._task
        if task is not None and not task.done():
            # nobody will read the answer: stop the work (an upstream call is closed, so the
            # upstream stops generating, and its slot is free for someone else)
            task.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self._task is None:
            self._next()

    def data_received(self, data: bytes) -> None:
        self.last_io = self._server.now()
        self.spoke = True
        if self._stop_parsing:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._stash.append(data)
            self._pause_reading()
            return
        in_body = False
        if self.in_message:
            if self.in_head:
                self._head_bytes += len(data)
                self._keep_head(data)
            else:
                self._after_head += len(data)
                in_body = True
        self._fresh = not self.in_message
        self._read = len(data)
        self._data = data
        try:
            if not in_body:
                self._parser.feed_data(data)
            elif "transfer-encoding" in self._headers:
                self._feed_body(data, crlf2_end(data, 0, self._tail))
            else:
                end = int(self._headers.get("content-length") or 0) - self._body_size
                if end < len(data):  # a request may be pipelined behind the body in this read
                    self._feed_body(data, end)
                else:
                    self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self._stop_parsing:
                self._refuse_now(InvalidRequest("Upgrade is not supported.", code="bad_request"))
        except httptools.HttpParserError as exc:
            if not self._stop_parsing:
                self._refuse_now(
                    InvalidRequest(f"The request is not valid HTTP/1.1 ({exc}).", code="bad_request")
                )
        if self.in_message and not self._stop_parsing:
            if self.in_head and self._head_bytes > MAX_HEAD:
                # llhttp holds an unfinished header until it ends: bound what it can hold
                self._refuse_now(_head_too_large())
            elif not self.in_head and self._after_head - self._body_size > MAX_HEAD + CHUNK_OVERHEAD * (
                self._chunks
            ):
                # framing and trailers beyond the body: an endless trailer or chunk extension
                self._refuse_now(_head_too_large("chunked trailers"))
            elif not self.in_head and "transfer-encoding" in self._headers:
                # in a chunked body: the stream's last bytes, for an end that straddles reads
                self._tail = ((self._tail if in_body else self._before) + data[-3:])[-3:]
        if not self.in_head:  # no request line left to check: hold no read
            self._data = self._start = b""
            if self._head_copy is not None:
                self._head_copy = None
                self._before = b""
        self._next()

    def _keep_head(self, data: bytes) -> None:
        """The head goes on in this read: keep it from the request's start (its request line is
        checked there, and a request pipelined behind it found from its end), at most MAX_HEAD
        bytes and one, as the head limit refuses a longer head."""
        head = self._head_copy
        if head is None:
            at = max(self._start_at, 0)
            head = self._head_copy = bytearray(self._start[at : at + MAX_HEAD + 1])
        self._before = bytes(head[-3:])
        head += data[: max(MAX_HEAD + 1 - len(head), 0)]

    def _feed_body(self, data: bytes, end: int) -> None:
        """Feed a read that begins inside a body in two parts, the body's end (``end``, where it
        may end) and the rest, so that a request pipelined behind the body begins a feed of its
        own. A chunked body may end at any CRLFCRLF; it is fed up to each until it has."""
        feed = self._parser.feed_data
        chunked = "transfer-encoding" in self._headers
        if end < 0 or end >= len(data):
            feed(data)
            return
        view = memoryview(data)
        at = 0
        while True:
            feed(view[at:end])
            at = end
            if self._stop_parsing:
                return
            if not self.in_message:  # the body ended: what follows begins a feed, at its start
                self._fresh = True
                self._read = len(data) - at
                self._begin_at = at
                try:
                    feed(view[at:])
                finally:
                    self._begin_at = 0
                return
            end = crlf2_end(data, at) if chunked else -1
            if end < 0:
                feed(view[at:])
                return

    def eof_received(self) -> bool | None:
        if self._task is None and not self._queue:
            return None  # close now
        self._close_after = True
        return True  # answer what was asked, then close

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._stop_parsing:
            return
        data = self._data
        if self._fresh:  # the request begins the feed, after the empty lines llhttp skips
            at = self._begin_at
            if data[at] in _CR_LF:
                at = skip_empty_lines(data, at)
        else:  # pipelined behind one that ended in this feed
            at = self._after_previous()
            self._head_copy = None
            self._before = b""
        self._start = data
        self._start_at = at
        self.in_message = True
        self.in_head = True
        self.message_started = self.last_io
        # a head that began at the start of this read holds at most the read; one that began
        # after an earlier message in it is counted from the next read on (one read more)
        self._head_bytes = self._read if self._fresh else 0
        self._head_size = 0
        self._fields = 0
        self._url = []
        self._path = ""
        self._query = ""
        self._headers = {}
        self._duplicate = None
        self._route = None
        self._ex = None
        self._body = []
        self._body_size = 0
        self._after_head = 0
        self._chunks = 0
        self._trailers = 0
        self._discard = False

    def _after_previous(self) -> int:
        """Where a request pipelined behind one that ended in this read begins, or -1 (see
        ``offsets``). Only the request before is looked at: from its start if it began in this
        read, else from the start of the read, which began in its head (one that began in its
        body was fed so that this request begins a feed of its own, ``_feed_body``)."""
        data = self._data
        if self._start_at < 0:
            return -1
        if self._start is data:
            head = data.find(CRLF2, self._start_at)
            head = head + 4 if head >= 0 else -1
        else:  # its head began in earlier reads
            head = crlf2_end(data, 0, self._before)
        if head < 0:
            return -1
        if "transfer-encoding" in self._headers:
            end = chunked_end(data, head)
        else:
            end = head + int(self._headers.get("content-length") or 0)
        return skip_empty_lines(data, end) if 0 <= end < len(data) else -1

    def on_url(self, url: bytes) -> None:
        if not self._stop_parsing:
            self._url.append(url)
            self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._stop_parsing:
            return
        if not self.in_head:  # a chunked trailer: counted against the head limits, never kept
            self._trailers += 1
            if self._trailers > MAX_HEADERS:
                self._refuse_now(_head_too_large("chunked trailers"))
            return
        self._fields += 1
        self._head_size += len(name) + len(value) + 4
        if self._fields > MAX_HEADERS or self._head_size > MAX_HEAD:
            self._discard = True
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").rstrip(" \t")  # trailing whitespace is not in the value (RFC 9112 5.1)
        previous = self._headers.get(key)
        if previous is None:
            self._headers[key] = text
        else:
            if key in SINGLE_HEADERS:
                self._duplicate = key
            self._headers[key] = f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self._stop_parsing:
            return
        target = b"".join(self._url).decode("latin-1")
        path, _, self._query = target.partition("?")
        self._path = path
        raw_method = self._parser.get_method()
        refusal = self._check_head(len(raw_method), len(target))
        if refusal is not None:
            self._refuse_queued(refusal, close=True)
            return
        method = raw_method.decode("latin-1")
        server = self._server
        match = server.routes.match(method, path)
        route = match.route
        if route is None:
            self._refuse_queued(self._no_route(method, path, match.allow), close=False)
            return
        keep = self._parser.should_keep_alive()
        ex = EdgeExchange(path, self._headers, b"", self, keep, method, self._query, match.rest)
        ex.http10 = self._parser.get_http_version() == "1.0"
        if route.access != "open":
            try:
                ex.principal = server.routes.gate(self._headers, route.access == "admin")
            except CorralError as exc:  # no key, a wrong one, or not an admin's: read no body
                self._refuse_queued(exc, close=True, surface=route.surface)
                return
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > server.max_body:
            self._refuse_queued(too_large(server.max_body, int(length)), close=True, surface=route.surface)
            return
        self._route = route
        self._ex = ex
        if (
            self._headers.get("expect", "").lower() == "100-continue"
            and self._task is None
            and not self._queue
        ):
            self.send(wire.CONTINUE)

    def _check_head(self, method: int, target: int) -> CorralError | None:
        """What makes a head unacceptable whatever it asks for, or None; ``method`` and
        ``target`` are the lengths of the request line's parts."""
        if self._discard:
            return _head_too_large()
        version = self._parser.get_http_version()
        if version not in _VERSIONS:
            return VersionNotSupported(
                f"HTTP/{version} is not spoken here: send HTTP/1.1.", code="http_version_not_supported"
            )
        # One SP between the parts (RFC 9112 §3): llhttp reads the line as method, SP+, target,
        # SP+, version and takes RTSP/ and ICE/ for HTTP/; a proxy that splits on single spaces
        # would read another target. So the byte after the method's SP is the target's first
        # (not SP), and the byte after the target's SP is the H of HTTP/: two bytes compared.
        raw: bytes | bytearray = self._start
        at = self._start_at
        gap = at + method + 1
        try:
            exact = at >= 0 and raw[gap] != 32 and raw[gap + target + 1] == 72
        except IndexError:  # the line went on in later reads
            raw = self._head_copy or b""
            gap -= at
            exact = gap + target + 1 < len(raw) and raw[gap] != 32 and raw[gap + target + 1] == 72
        if not exact:
            return InvalidRequest(
                "The request line must be the method, the target and the HTTP version, one space apart.",
                code="bad_request",
            )
        if self._duplicate is not None:
            return InvalidRequest(
                f"The request has more than one {self._duplicate} header; send it once.",
                code="duplicate_header",
            )
        if version == "1.1" and "host" not in self._headers:
            return InvalidRequest("An HTTP/1.1 request needs a Host header.", code="missing_host")
        if self._parser.should_upgrade():
            return InvalidRequest("Upgrade is not supported.", code="bad_request")
        coding = self._headers.get("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            # llhttp frames "gzip, chunked" as chunked; corral decodes no coding but chunked
            return CodingNotImplemented(
                f"Transfer-Encoding {coding!r} is not supported: send the body plainly, or chunked.",
                code="transfer_coding_not_supported",
            )
        return None

    def _no_route(self, method: str, path: str, allow: tuple[str, ...]) -> CorralError:
        if allow:
            return MethodNotAllowed(f"{method} is not allowed on {path}; use {', '.join(allow)}.", allow)
        if control_path(path):  # named by its settings: its address is not for every client to learn
            return NotFound(
                f"{path} is served by corral's control plane, not here: it listens on its own address, "
                "admin.host and admin.port in the config (corral serve prints it at start).",
                code="not_found",
            )
        return NotFound(
            f"No route for {method} {path}; the OpenAI API is under /v1 (e.g. POST /v1/chat/completions) "
            "and Ollama's under /api.",
            code="not_found",
        )

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._route is None:
            return
        server = self._server
        if self._body_size > server.max_body:
            self._refuse_queued(too_large(server.max_body), close=True, surface=self._route.surface)
            return
        if server.buffered + len(data) > server.max_buffered:
            self._refuse_queued(
                ServerBusy(
                    "corral is holding as many request bodies in memory as it may "
                    "(server.max_buffered_bytes); retry shortly.",
                    code="server_busy",
                ),
                close=True,
                surface=self._route.surface,
            )
            return
        server.buffered += len(data)
        self._held += len(data)
        self._body.append(data)

    def on_message_complete(self) -> None:
        self._fresh = False  # a message that begins after this one in the same read is not at its start
        if self._stop_parsing and self._route is None:
            return
        self.in_message = False
        route, ex = self._route, self._ex
        if route is None or ex is None:
            return
        self._route = self._ex = None
        ex.body_bytes = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        self._queue.append((route, ex))
        if not ex.keep_alive:
            self._stop_parsing = True
            self._close_after = True

    # -- answering ---------------------------------------------------------------------------

    def _refuse_queued(self, exc: CorralError, *, close: bool, surface: Surface | None = None) -> None:
        """Answer the current request with an error, in its turn; stop reading if ``close``."""
        ex = EdgeExchange(self._path, self._headers, b"", self, keep_alive=not close)
        _, body, headers = error_parts(exc, surface=surface or surface_of_path(self._path))
        self._queue.append((_Refused(exc.http_status, body, headers), ex))
        self._route = None
        self._ex = None
        self._body = []
        if close:
            self._stop_parsing = True
            self._close_after = True

    def _refuse_now(self, exc: CorralError) -> None:
        """A request that cannot be read on: answer (if nothing else is being answered) and close."""
        self._stop_parsing = True
        self._close_after = True
        self._route = None
        self._ex = None
        self._body = []
        if self._task is not None or self._queue:
            return
        _, body, headers = error_parts(exc, surface=surface_of_path(self._path))
        with contextlib.suppress(ConnectionError):
            self.send(
                wire.head(exc.http_status, "application/json", headers, self.date(), len(body), False) + body
            )
        self.close()

    def _next(self) -> None:
        if self._task is not None or self._write_paused:
            return  # one answer at a time, and none while the client has not taken the last one
        if self._queue:
            route, ex = self._queue.popleft()
            if isinstance(route, _Refused):
                ex.answer(route.status, route.body, route.headers)
                self._next()
                return
            task = self._loop.create_task(self._run(route, ex))
            self._task = task
            self._server.track(task)
            return
        if self._close_after or self.closing:
            self.close()
        elif self._stash:
            stash, self._stash = self._stash, []
            self._resume_reading()
            for data in stash:
                self.data_received(data)

    async def _run(self, route: Route, ex: EdgeExchange) -> None:
        try:
            await route.handler(ex)
            if not ex.started:  # a handler that wrote nothing: never leave the client waiting
                raise RuntimeError(f"the handler of {ex.path} wrote no answer")
        except CorralError as exc:
            try:
                self._fail(ex, exc, route.surface)
            except Exception:
                self._internal(ex)
        except asyncio.CancelledError:
            if self._transport is not None:  # cancelled by the server's shutdown, not by the client
                raise
        except Exception:
            self._internal(ex)
        finally:
            self._task = None
            self._release(len(ex.body_bytes))
            ex.body_bytes = b""
            self.idle_since = self._server.now()  # keep-alive idle time counts from the answer's end
            if not ex.keep_alive or self.closing:  # the answer said Connection: close
                self._close_after = True
                self._queue.clear()
            if self._transport is not None:
                self._next()

    def _internal(self, ex: EdgeExchange) -> None:
        log.exception("unhandled error on %s %s (request %s)", ex.method, ex.path, ex.request_id)
        ex.keep_alive = False
        if not ex.started:
            ex.answer(500, internal_error(ex.request_id), id_headers(ex.request_id, ex.client_request_id))

    def _fail(self, ex: EdgeExchange, exc: CorralError, surface: Surface) -> None:
        if ex.started:  # the head is out: all that is left is to end the connection
            ex.keep_alive = False
            return
        status, body, headers = error_parts(
            exc, ex.request_id, surface=surface, client_request_id=ex.client_request_id
        )
        ex.answer(status, body, headers)

    def _release(self, size: int) -> None:
        size = min(size, self._held)
        self._held -= size
        self._server.buffered -= size

    def _release_held(self) -> None:
        self._server.buffered -= self._held
        self._held = 0

    # -- used by the exchange and the server ---------------------------------------------------

    def date(self) -> str:
        return self._server.clock.date()

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)

    async def drain(self) -> None:
        """Wait until the client has taken what was written, up to the server's send timeout;
        past it the connection is closed (the client stopped reading)."""
        if not self._write_paused:
            return
        if self._transport is None:
            raise ConnectionResetError("the client closed the connection")
        drain = self._drain
        if drain is None:
            drain = self._drain = self._loop.create_future()
        try:
            async with asyncio.timeout(self._server.send_timeout):
                await drain  # cancelled with this wait on a timeout: no one is left holding it
        except TimeoutError:
            self._drain = None
            log.info("closing a connection whose client took nothing for %.0f s", self._server.send_timeout)
            self.abort()
            raise ConnectionResetError("the client stopped reading (server.send_timeout)") from None

    @property
    def busy(self) -> bool:
        """An answer is being made or written."""
        return self._task is not None

    @property
    def queued(self) -> int:
        """Requests read whole and waiting for their turn."""
        return len(self._queue)

    @property
    def paused(self) -> bool:
        """Writing waits for the client to read."""
        return self._write_paused

    @property
    def idle(self) -> bool:
        """Between requests: nothing being read, answered or waiting."""
        return not (self.in_message or self._task is not None or self._queue)

    def shut(self) -> bool:
        """The server is stopping: close now if idle, else after the answer in progress. A
        connection that has sent nothing yet (accepted just before the listener closed, its
        request on the way) is left open: True, and the server gives it a moment to send its
        request, answered with ``Connection: close``, rather than cut it before it could."""
        self.closing = True
        if self.idle:
            if not self.spoke:
                return True
            self.close()
        return False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._transport is not None:
            self._reading = True
            self._transport.resume_reading()


def _head_too_large(what: str = "The request head (request line and headers)") -> HeadTooLarge:
    return HeadTooLarge(f"{what} is over {MAX_HEAD} bytes or {MAX_HEADERS} fields.", code="header_too_large")
