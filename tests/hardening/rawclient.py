"""A raw-socket HTTP/1.1 client for the hardening tests: it writes exact bytes (hostile ones
included) and parses answers itself, every read bounded by a timeout.

Also: how a server-side socket looks to the kernel (``/proc/net/tcp``), which lets a test wait
until the server has *read* what was sent, or see that a peer closed its end, without sleeping;
and the gateway under test (``start_fleet``), in front of an emulated upstream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from corral.config.schema import ServerConfig
from corral.edge.server import EdgeServer
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

TIMEOUT = 5.0


class Reset(Exception):
    """The server closed the connection (or reset it) before a whole answer arrived."""


def request(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: str = "",
    version: str = "1.1",
    host: str | None = "127.0.0.1",
) -> bytes:
    """A request with a Content-Length body (when ``body`` is given); ``headers`` are extra
    lines, each ending in CRLF."""
    lines = f"{method} {path} HTTP/{version}\r\n"
    if host is not None:
        lines += f"Host: {host}\r\n"
    if body is not None:
        lines += f"Content-Length: {len(body)}\r\n"
    return (lines + headers + "\r\n").encode("latin-1") + (body or b"")


def bearer(key: str) -> str:
    return f"Authorization: Bearer {key}\r\n"


def chunked(chunks: list[bytes], trailers: str = "") -> bytes:
    """A chunked body: ``chunks``, the last chunk, ``trailers`` (lines ending in CRLF), CRLF."""
    framed = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks)
    return framed + b"0\r\n" + trailers.encode("latin-1") + b"\r\n"


@dataclass
class Response:
    version: str
    status: int
    fields: list[tuple[str, str]]  # (lower-case name, value), in order, repeats kept
    body: bytes = b""
    chunked: bool = False
    close_delimited: bool = False  # no length and not chunked: the body ran to the close

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return ", ".join(values) if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name.lower()]

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class RawConnection:
    """One client connection. ``rcvbuf`` shrinks the client's receive buffer (a client that
    does not read then stops the server's writes quickly)."""

    port: int
    rcvbuf: int | None = None
    timeout: float = TIMEOUT
    sock: socket.socket = field(init=False)
    _buffer: bytes = field(init=False, default=b"")
    _eof: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(self.timeout)
        self.sock.connect(("127.0.0.1", self.port))

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def abort(self) -> None:
        """Hang up with a reset (SO_LINGER 0), as a client that dies does."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_until_refused(self, piece: bytes, limit: int, server_port: int) -> tuple[int, bool]:
        """Send ``piece`` after ``piece``, each once the server has read the one before, until
        ``limit`` bytes went out, an answer is readable, or the server refuses more (reset,
        broken pipe, or no longer reading). Returns (bytes sent, whether the server answered or
        refused before the limit). Paced so, the bytes sent are the bytes the server took."""
        sent = 0
        while sent < limit:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:
                return sent, True
            try:
                self.sock.sendall(piece)
                sent += len(piece)
                wait_read(server_port, self.local_port)
            except (ConnectionError, TimeoutError):
                return sent, True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return sent, bool(readable)

    # -- reading -------------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read once more; False at the end of the stream (a reset counts as an end)."""
        if self._eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer within the client's timeout")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionError:
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def _until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self._buffer:
            if not self._fill(deadline):
                raise Reset(f"the connection ended before {marker!r} (got {self._buffer[:200]!r})")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            if not self._fill(deadline):
                raise Reset(f"the connection ended {size - len(self._buffer)} bytes short of a body")
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def response(self, timeout: float | None = None, *, head_only: bool = False) -> Response:
        """The next whole answer (a ``100 Continue`` is an answer of its own)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        head = self._until(b"\r\n\r\n", deadline).decode("latin-1")
        lines = head.split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        fields = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
        response = Response(version, int(status), fields)
        if head_only or response.status in (100, 101, 204, 304):
            return response
        encoding = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if encoding == "chunked":
            response.chunked = True
            parts = []
            while True:
                size = int(self._until(b"\r\n", deadline).split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n", deadline)  # no trailers from corral
                    break
                parts.append(self._exactly(size + 2, deadline)[:-2])
            response.body = b"".join(parts)
        elif length is not None:
            response.body = self._exactly(int(length), deadline)
        else:
            response.close_delimited = True
            while self._fill(deadline):
                pass
            response.body, self._buffer = self._buffer, b""
        return response

    def request(self, data: bytes, timeout: float | None = None) -> Response:
        self.send(data)
        return self.response(timeout)

    def closed(self, timeout: float | None = None) -> bool:
        """True once the server ends the connection with nothing more sent; False if bytes
        arrive instead; TimeoutError if neither happens in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if self._buffer:
            return False
        return not self._fill(deadline)

    def rest(self, timeout: float | None = None) -> bytes:
        """Every byte until the server closes (TimeoutError if it does not in time)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._fill(deadline):
            pass
        data, self._buffer = self._buffer, b""
        return data


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g} s")
        time.sleep(0.005)


# -- the kernel's view of loopback sockets ------------------------------------------------------

TCP_STATES = {1: "ESTABLISHED", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN"}


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str
    tx_queue: int  # bytes sent and not yet acknowledged by the peer
    rx_queue: int  # bytes received and not yet read by the application


def tcp_sockets() -> list[TcpSocket]:
    """IPv4 TCP sockets of this network namespace (``/proc/net/tcp``)."""
    found = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            cols = line.split()
            local, remote, state, queues = cols[1], cols[2], int(cols[3], 16), cols[4]
            tx, rx = (int(q, 16) for q in queues.split(":"))
            found.append(
                TcpSocket(
                    int(local.split(":")[1], 16),
                    int(remote.split(":")[1], 16),
                    TCP_STATES.get(state, str(state)),
                    tx,
                    rx,
                )
            )
    return found


def server_side(server_port: int, client_port: int) -> TcpSocket | None:
    """The server's end of the connection from ``client_port``, if the kernel still has it."""
    for entry in tcp_sockets():
        if entry.local_port == server_port and entry.remote_port == client_port:
            return entry
    return None


def wait_read(server_port: int, client_port: int, timeout: float = TIMEOUT) -> None:
    """Wait until the server has read every byte the client sent (its receive queue is empty)."""

    def read_all() -> bool:
        entry = server_side(server_port, client_port)
        return entry is None or entry.rx_queue == 0

    wait_until(read_all, timeout, "the server reading what was sent")


# -- the gateway under test ------------------------------------------------------------------


@dataclass
class Fleet:
    """A gateway (as `corral serve` serves it) in front of an emulated OpenAI upstream named
    ``up``, with the demo provider (``demo/echo``) too."""

    emulator: OpenAIEmulator
    upstream: ServerThread
    gateway: GatewayServer

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def key(self) -> str:
        return self.gateway.key

    @property
    def admin_url(self) -> str:
        """The control plane (admin API); the data port until the listeners are split."""
        url: str = getattr(self.gateway, "admin_url", self.gateway.url)
        return url

    def in_flight(self, deployment: str = "up") -> int:
        """Requests the gateway has in flight on ``deployment`` (its slots in use)."""
        health = httpx.get(self.admin_url + "/admin/health", headers=self.gateway.headers(), timeout=5)
        rows = health.json()["deployments"]
        return int(next(r["in_flight"] for r in rows if r["name"] == deployment))

    def usage(self) -> list[dict[str, Any]]:
        """The newest usage records (needs the control plane: a fleet started with ``home``)."""
        recent = httpx.get(self.admin_url + "/admin/usage/recent", headers=self.gateway.headers(), timeout=5)
        rows: list[dict[str, Any]] = recent.json()["data"]
        return rows

    def edge(self) -> EdgeServer:
        """The data plane's server (its sweeper and clock), reached through the test server."""
        listener = getattr(self.gateway, "_listener", None)
        edge = getattr(listener, "edge", None)
        if not isinstance(edge, EdgeServer):
            raise AssertionError("the gateway's EdgeServer is not reachable at GatewayServer._listener.edge")
        return edge

    def sweep(self, now: float) -> None:
        """One pass of the edge's sweeper at ``now``, run on the gateway's loop."""
        edge = self.edge()

        async def run() -> None:
            edge.sweep(now)

        self.gateway.call(run)

    def stop(self) -> None:
        self.gateway.stop()
        self.upstream.stop()


def server_options(**options: Any) -> dict[str, Any]:
    """``server:`` settings, keeping only those this version of corral knows (the tests name
    settings the fixes add; without them the fault shows with the defaults)."""
    known = {f.name for f in dataclasses.fields(ServerConfig)}
    return {name: value for name, value in options.items() if name in known}


def start_fleet(
    loop: str,
    *,
    server: dict[str, Any] | None = None,
    router: dict[str, Any] | None = None,
    max_parallel: int = 0,
    home: Path | None = None,
) -> Fleet:
    emulator = OpenAIEmulator(["gpt-4o-mini", "text-embedding-3-small", "slow-model"])
    upstream = ServerThread(emulator.app, shutdown_timeout=0.2).start()
    config = make_config(
        {
            "providers": [
                {
                    "name": "up",
                    "type": "openai",
                    "base_url": upstream.url + "/v1",
                    "max_parallel": max_parallel,
                }
            ],
            "router": {"health_interval": "60s", **(router or {})},
            "server": server_options(**(server or {})),
        },
        demo=True,
    )
    try:
        gateway = GatewayServer(config, home=home, loop=loop).start()
    except BaseException:
        upstream.stop()
        raise
    return Fleet(emulator, upstream, gateway)


def audit_fault(number: int, what: str, raises: type[BaseException] = AssertionError) -> pytest.MarkDecorator:
    """The marker of a regression test for audit fault ``number`` (issue #12). It was a strict
    xfail expecting ``raises`` until the fix landed (every one was seen failing before it); now
    it only names the fault, so ``pytest -m audit_fault`` runs them all."""
    return pytest.mark.audit_fault(number=number, what=what, raised_before_the_fix=raises.__name__)
