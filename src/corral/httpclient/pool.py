"""A bounded keep-alive pool of connections to one upstream origin, and its request method.

At most ``max_connections`` connections exist at once (open, idle or being opened); a request
that finds none free waits its turn, in order, for at most ``connect_timeout``, which also
bounds opening a new connection. Idle connections are reused newest first and closed after
``keepalive`` seconds unused. A connection still draining the end of an answer its reader let
go of (``Response.release``) is about to be free: a request with no idle connection waits for it
(while it drains, at most ``DRAIN_SECONDS``) instead of opening another.

A request is written at most once unless resending it is harmless: a reused connection that
turns out closed before a byte is written (the server closed or reset it while idle, even if
the loop has not noticed yet) is replaced and the request sent on a fresh one; one that closes
after the request went out, before a byte of answer, is retried once on a fresh connection only
for an idempotent method (GET, PUT, DELETE, OPTIONS). A POST the server may have read is never
sent twice: that failure is the caller's to see.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any
from urllib.parse import urlsplit

from corral.config.syntax import FRAMING, HEADER_NAME, REQUEST_PATH
from corral.httpclient.connection import DRAIN_SECONDS, Connection
from corral.httpclient.errors import ConnectFailed, ConnectTimeout, Disconnected, TLSFailed
from corral.httpclient.response import Response

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What may go on the wire as it is (config validation uses the same two patterns):
# RFC 9110 9.2.2: sending one of these twice has the effect of sending it once (HEAD is refused).
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS"})


class Pool:
    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float | None,
        headers: Mapping[str, str] | None = None,
        verify_ssl: bool = True,
        keepalive: float = 30.0,
        user_agent: str = "corral",
        max_body: int | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL with a host: {base_url!r}")
        self.host = parts.hostname.encode("idna").decode("ascii")  # raises UnicodeError if invalid
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self.prefix = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl.create_default_context()
            if not verify_ssl:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if parts.port is None else f"{host}:{self.port}"
        given = dict(headers or {})
        framing = sorted(FRAMING & {name.lower() for name in given})
        if framing:
            raise ValueError(f"header {framing[0]!r} is set by corral itself and cannot be configured")
        fixed = {"Host": authority, "User-Agent": user_agent, "Accept-Encoding": "identity"}
        own = {name.lower() for name in given}
        merged = {name: value for name, value in fixed.items() if name.lower() not in own} | given
        self._head = encode_headers(merged)
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self.max_body = max_body  # the most ``Response.read()`` gathers by default
        self.draining = 0  # connections dropping the rest of a released answer (counted by them)
        self._idle: list[Connection] = []
        self._open = 0  # connections that exist or are being opened
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        return self._open - len(self._idle)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        extra_headers: bytes = b"",
    ) -> Response:
        """Send ``method`` to ``prefix + path``; returns once the answer's headers are in.
        HEAD is not offered: the parser would wait for the body a HEAD answer announces.
        ``extra_headers`` are header lines already encoded (``encode_headers``), so a constant
        set costs nothing per request. The caller reads the body, then calls ``release()`` (or
        ``close()`` to cut it short); ``get`` does that for a GET."""
        if method == "HEAD":
            raise ValueError("HEAD requests are not supported by this client")
        if not REQUEST_PATH.fullmatch(path):
            raise ValueError(f"not a request path this client sends: {path[:100]!r}")
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n".encode("latin-1") + self._head + extra_headers
        if body is None:
            data = [head, b"\r\n"] if method in ("GET", "DELETE") else [head, b"Content-Length: 0\r\n\r\n"]
        else:
            data = [head, b"Content-Length: %d\r\n\r\n" % len(body), body]
        for attempt in (1, 2):
            conn = await self._acquire(fresh=attempt == 2)
            reused = conn.requests > 0
            try:
                return await conn.send(data, self.read_timeout)
            except Disconnected as exc:
                if attempt == 2:
                    raise
                if exc.request_sent and not (reused and exc.before_response and method in IDEMPOTENT):
                    raise  # the server may have read it: a POST is not sent twice
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str) -> _Pending:
        return _Pending(self.request("GET", path))

    # -- connections -----------------------------------------------------------------------
    #
    # A slot is counted in ``_open`` from the moment it is reserved until its connection is
    # forgotten (closed), or the connect fails. A finished connection, or the slot of a closed
    # one, goes straight to the first waiter, so waiters are served in order and a busy
    # client cannot take a connection from under one.

    async def _acquire(self, fresh: bool = False) -> Connection:
        """A connection to send on: the newest idle one, else one about to finish draining,
        else a new one (``fresh``: never an idle or draining one, for the retry after a stale
        one)."""
        if self._closed:
            raise ConnectFailed("the client is closed")
        loop = self._loop or self._bind(asyncio.get_running_loop())
        idle = self._idle
        reserved = False
        deadline = self.connect_timeout
        if idle and not fresh and not self._waiters:  # the usual case: no timer, no await
            conn = idle.pop()
            if not conn.closed and loop.time() - conn.idle_since < self.keepalive:
                return conn
            self._retire(conn)  # the newest is stale, so are the older ones: keep its slot
            reserved = True
        elif not fresh and self.draining > len(self._waiters):
            # A connection is dropping the end of an answer (an end marker a moment behind the
            # last line): wait for it, or for its slot if the drain fails, rather than open one.
            deadline += DRAIN_SECONDS
        elif self._open < self.max_connections:  # any waiters are waiting for drains
            self._open += 1
            reserved = True
        elif fresh and idle and not self._waiters:
            self._retire(idle.pop(0))  # its slot, for the fresh connection
            reserved = True
        try:
            async with asyncio.timeout(deadline):
                if not reserved:
                    handed = await self._wait_turn(loop)
                    if handed is not None:
                        return handed  # just finished an answer: not stale, so fine for `fresh`
                try:
                    return await self._connect(loop)
                except BaseException:
                    self._free_slot()
                    raise
        except TimeoutError:
            raise ConnectTimeout(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s"
            ) from None

    def _bind(self, loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
        self._loop = loop
        return loop

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop) -> Connection | None:
        """Queue for a connection (returned) or a free slot (None: it is ours to connect on)."""
        turn: asyncio.Future[Connection | None] = loop.create_future()
        self._waiters.append(turn)
        try:
            return await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                handed = turn.result()  # given to us, then we gave up: pass it on
                if handed is None:
                    self._free_slot()
                else:
                    self.put_back(handed)
            elif turn in self._waiters:
                self._waiters.remove(turn)
            raise

    def _hand_over(self, handed: Connection | None) -> bool:
        """Give a connection (or, with None, a slot) to the first request still waiting."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(handed)
                return True
        return False

    def _free_slot(self) -> None:
        if not self._hand_over(None):
            self._open -= 1

    def _retire(self, conn: Connection) -> None:
        """Close an idle connection, keeping its slot for the caller."""
        conn.counted = False
        conn.abandon()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        """Open a connection on a slot already reserved; on failure the caller frees the slot."""
        made: list[Connection] = []

        def protocol() -> Connection:
            made.append(Connection(self, loop))
            return made[-1]

        try:
            _, conn = await loop.create_connection(
                protocol,
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
            )
        except BaseException as exc:
            for half in made:  # a connection cut short mid-setup must not free the slot again
                self._retire(half)
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise TLSFailed(exc.verify_message or "certificate verify failed") from None
            if isinstance(exc, ssl.SSLError):
                raise TLSFailed(exc.reason or exc.__class__.__name__) from None
            if isinstance(exc, OSError):
                raise ConnectFailed(exc.strerror or str(exc)[:300] or exc.__class__.__name__) from None
            raise
        return conn

    def put_back(self, conn: Connection) -> None:
        """A connection finished an answer and may carry another request."""
        if self._closed:
            conn.abandon()
            return
        if conn.closed:
            return  # its forget() frees the slot
        if self._hand_over(conn):
            return
        loop = self._loop or self._bind(asyncio.get_running_loop())
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive, self._sweep)

    def forget(self, conn: Connection) -> None:
        """A connection closed (either side): its slot goes to a waiter, or is freed."""
        if not conn.counted:
            return
        conn.counted = False
        if conn in self._idle:
            self._idle.remove(conn)
        self._free_slot()

    def _sweep(self) -> None:
        self._sweeper = None
        if not self._idle:
            return
        loop = self._loop or self._bind(asyncio.get_running_loop())
        cutoff = loop.time() - self.keepalive
        for conn in [c for c in self._idle if c.idle_since <= cutoff]:
            self._idle.remove(conn)
            conn.abandon()  # its forget() frees the slot
        if self._idle:
            self._sweeper = loop.call_later(self.keepalive, self._sweep)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abandon()
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_exception(ConnectFailed("the client is closed"))
        await asyncio.sleep(0)  # let the transports' connection_lost run


class _Pending:
    """``async with pool.get(path) as response``: released on the way out."""

    __slots__ = ("_coro", "_response")

    def __init__(self, coro: Coroutine[Any, Any, Response]) -> None:
        self._coro = coro
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._coro
        return self._response

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.release()


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Header lines, refusing names or values that could split the request."""
    lines = []
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} has a character not allowed in an HTTP header")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")
