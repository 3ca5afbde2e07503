"""When a request may go out again: never a POST the server may have read; always a request
not one byte of which was written (the reused connection was already closed, reset, or had
bytes nobody asked for, even if the loop had not noticed yet).

The "already closed" cases need the server's FIN (or bytes) in the client's socket before the
loop has run: a server thread with blocking sockets does that while the test holds the loop,
and the test checks with poll() that the kernel has it before sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from corral.httpclient import Disconnected
from tests.httpclient.rawserver import Conn, answer

pytestmark = pytest.mark.timeout(20)


# -- the server read the request, then closed: a POST must not be sent twice -----------------


def reads_then_closes_on_second_request(conn: Conn):
    async def run() -> None:
        await conn.read_request()
        await conn.send(answer(b"first"))
        await conn.read_request()  # read (and maybe acted on), never answered

    return run()


async def answers_all(conn: Conn) -> None:
    while (request := await conn.read_request()) is not None:
        await conn.send(answer(request.path.encode()))


async def test_post_the_server_read_before_closing_is_not_resent(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await (reads_then_closes_on_second_request(conn) if conn.number == 1 else answers_all(conn))

    server = await serve(handler)
    client = pool(server.url())
    assert await (await client.request("POST", "/first", b"{}")).read() == b"first"
    with pytest.raises(Disconnected) as caught:
        await client.request("POST", "/generate", b'{"prompt": "once"}')
    assert caught.value.before_response and caught.value.request_sent
    assert [r.path for r in server.requests].count("/generate") == 1
    assert server.accepted == 1
    assert client.in_use == 0
    assert await (await client.request("POST", "/after", b"{}")).read() == b"/after"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_idempotent_request_the_server_dropped_is_retried_once(serve, pool, method) -> None:
    async def handler(conn: Conn) -> None:
        await (reads_then_closes_on_second_request(conn) if conn.number == 1 else answers_all(conn))

    server = await serve(handler)
    client = pool(server.url())
    assert await (await client.request(method, "/first")).read() == b"first"
    assert await (await client.request(method, "/again")).read() == b"/again"
    assert [r.path for r in server.requests] == ["/first", "/again", "/again"]


# -- not a byte written: safe to send on another connection, whatever the method ------------


class ThreadServer:
    """Blocking-socket HTTP server on a thread. Connection 1 answers its first request, then
    waits for ``go`` and runs ``then(sock)`` (which returns True if it closed the socket); it
    records every request it reads afterwards, answering none. Later connections answer each
    request with its path."""

    def __init__(self, then: Callable[[socket.socket], bool]) -> None:
        self._then = then
        self.go = threading.Event()
        self.done = threading.Event()  # connection 1 has run ``then``
        self.finished = threading.Event()  # connection 1's thread has ended
        self.paths: dict[int, list[str]] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadServer:
        self._threads.append(threading.Thread(target=self._accept, daemon=True))
        self._threads[0].start()
        return self

    def stop(self) -> None:
        for sock in [self._listener, *self._socks]:  # shutdown wakes a thread blocked on it
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            number += 1
            self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        paths = self.paths.setdefault(number, [])
        reader = sock.makefile("rb")
        try:
            while (path := _read_request(reader)) is not None:
                paths.append(path)
                if number == 1 and len(paths) > 1:
                    continue  # read after ``then``: recorded, never answered
                sock.sendall(answer(path.encode()))
                if number == 1:
                    self.go.wait(5)
                    closing = self._then(sock)
                    if closing:
                        reader.close()
                        sock.close()
                    self.done.set()
                    if closing:
                        return
        except (OSError, ValueError):
            pass
        finally:
            reader.close()
            if number == 1:
                self.finished.set()


def _read_request(reader) -> str | None:
    line = reader.readline()
    if not line:
        return None
    length = 0
    while (header := reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return line.split(b" ")[1].decode()


@contextlib.contextmanager
def thread_server(then: Callable[[socket.socket], bool]) -> Iterator[ThreadServer]:
    server = ThreadServer(then).start()
    try:
        yield server
    finally:
        server.stop()


def wait_until_the_kernel_has_it(client) -> None:
    """Hold the loop (so the connection's protocol cannot see it) until the idle connection's
    socket is readable: the server's FIN or bytes have arrived."""
    (conn,) = client._idle
    fd = conn._transport.get_extra_info("socket").fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(5000), "the server's FIN never reached the client's socket"


async def send_after_the_server_acted(client, server: ThreadServer) -> bytes:
    assert await (await client.request("POST", "/first", b"{}")).read() == b"/first"
    server.go.set()
    assert server.done.wait(5)  # blocks the loop on purpose: it must not run before the send
    wait_until_the_kernel_has_it(client)
    response = await client.request("POST", "/second", b'{"prompt": "once"}')
    body = await response.read()
    await asyncio.get_running_loop().run_in_executor(None, server.finished.wait, 5)
    return body


def half_close(sock: socket.socket) -> bool:
    sock.shutdown(socket.SHUT_WR)  # FIN, but it keeps reading: a request sent now is read
    return False


def unasked_408(sock: socket.socket) -> bool:
    sock.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)
    return False


@pytest.mark.parametrize("then", [half_close, unasked_408], ids=["fin-pending", "unasked-408"])
async def test_post_on_a_connection_the_server_already_closed_goes_once_on_a_fresh_one(pool, then) -> None:
    with thread_server(then) as server:
        client = pool(server.url())
        assert await send_after_the_server_acted(client, server) == b"/second"
        # not written to the closed connection (where the server would have read it) at all
        assert server.paths == {1: ["/first"], 2: ["/second"]}


async def test_post_on_a_connection_reset_before_the_write_goes_on_a_fresh_one(pool) -> None:
    def reset(sock: socket.socket) -> bool:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return True  # closed with linger 0: an RST

    with thread_server(reset) as server:
        client = pool(server.url())
        assert await send_after_the_server_acted(client, server) == b"/second"
        assert server.paths == {1: ["/first"], 2: ["/second"]}
