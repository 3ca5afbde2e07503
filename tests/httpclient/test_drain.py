"""An answer whose last line is in but whose end marker is not: ``settle()`` waits for the
marker so the connection is back in its pool (the newest idle one) before the caller answers its
own client, which is what the flaky
``test_one_connection_carries_sequential_streamed_folded_and_native_calls`` needed; and a request
that still finds a connection draining waits for it instead of opening another one, or gets a
connection of its own when the drain fails.
"""

from __future__ import annotations

import asyncio

import pytest

from corral.httpclient.connection import DRAIN_SECONDS
from tests.httpclient.rawserver import Conn, answer, eventually

pytestmark = pytest.mark.timeout(20)

LAST_LINE = b'{"done":true}\n'


def held_end_marker(marker_may_go: asyncio.Event, *, then_close: bool = False):
    """``/stream`` is a chunked answer whose last line comes at once and whose end marker waits
    for ``marker_may_go`` (or, with ``then_close``, never comes: the server closes instead)."""

    async def handler(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.path != "/stream":
                await conn.send(answer(request.path.encode()))
                continue
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            await conn.send(head + b"%x\r\n%s\r\n" % (len(LAST_LINE), LAST_LINE))
            await marker_may_go.wait()
            if then_close:
                return
            await conn.send(b"0\r\n\r\n")

    return handler


async def read_last_line_and_release(client) -> None:
    response = await client.request("POST", "/stream", b"{}")
    async for data in response.chunks():
        assert data == LAST_LINE
        break
    response.release()  # as the Ollama relays do once they have the final line
    assert client.draining == 1


async def test_next_request_waits_for_a_draining_connection(serve, pool) -> None:
    marker_may_go = asyncio.Event()
    server = await serve(held_end_marker(marker_may_go))
    client = pool(server.url())
    await read_last_line_and_release(client)
    nxt = asyncio.create_task(client.request("POST", "/next", b"{}"))
    # Either it queued for the draining connection, or (the fault) it opened another one.
    await eventually(lambda: len(client._waiters) == 1 or server.accepted == 2)
    assert server.accepted == 1, "a second connection was opened while the first was draining"
    marker_may_go.set()
    assert await (await asyncio.wait_for(nxt, 5)).read() == b"/next"
    assert server.accepted == 1
    assert [r.path for r in server.conns[0].requests] == ["/stream", "/next"]
    assert client.draining == 0


async def test_only_as_many_requests_wait_as_connections_drain(serve, pool) -> None:
    marker_may_go = asyncio.Event()
    server = await serve(held_end_marker(marker_may_go))
    client = pool(server.url())
    await read_last_line_and_release(client)
    waiting = asyncio.create_task(client.request("POST", "/waits", b"{}"))
    await eventually(lambda: len(client._waiters) == 1 or server.accepted == 2)
    # One connection drains and one request already waits for it: the next one connects.
    assert await (await asyncio.wait_for(client.request("POST", "/other", b"{}"), 5)).read() == b"/other"
    assert server.accepted == 2
    marker_may_go.set()
    assert await (await asyncio.wait_for(waiting, 5)).read() == b"/waits"
    assert server.accepted == 2  # it took whichever connection came free first


async def test_a_failed_drain_hands_its_slot_to_the_waiting_request(serve, pool) -> None:
    marker_may_go = asyncio.Event()
    server = await serve(held_end_marker(marker_may_go, then_close=True))
    client = pool(server.url(), max_connections=1)
    await read_last_line_and_release(client)
    nxt = asyncio.create_task(client.request("POST", "/next", b"{}"))
    await eventually(lambda: len(client._waiters) == 1)
    marker_may_go.set()  # the server closes instead of ending the answer
    assert await (await asyncio.wait_for(nxt, 5)).read() == b"/next"
    assert server.accepted == 2
    assert client.draining == 0
    assert client._open == 1


async def test_a_drain_that_never_ends_costs_a_waiter_at_most_the_drain_period(serve, pool) -> None:
    never = asyncio.Event()
    server = await serve(held_end_marker(never))
    client = pool(server.url(), connect_timeout=0.5)  # shorter than the drain: still served
    await read_last_line_and_release(client)
    response = await asyncio.wait_for(client.request("POST", "/next", b"{}"), DRAIN_SECONDS + 2)
    assert await response.read() == b"/next"
    assert server.accepted == 2
    assert client.draining == 0
    never.set()


async def two_idle_connections(client, server) -> None:
    """As start-up discovery and the first health check leave a provider's pool."""
    answers = await asyncio.gather(*(client.request("POST", f"/{n}", b"{}") for n in "ab"))
    for response in answers:
        await response.read()
    assert server.accepted == 2 and client.in_use == 0


def carrier(server, path: str):
    return next(conn for conn in server.conns if any(r.path == path for r in conn.requests))


async def test_a_settled_answer_has_its_connection_back_before_the_caller_answers(serve, pool) -> None:
    """The cause of the flaky end-to-end test: the last line of an answer went to the client
    while its connection still waited for the end marker, so the client's next request took
    the pool's other idle connection. ``settle()`` waits for the marker first."""
    marker_may_go = asyncio.Event()
    server = await serve(held_end_marker(marker_may_go))
    client = pool(server.url())
    await two_idle_connections(client, server)
    response = await client.request("POST", "/stream", b"{}")
    async for data in response.chunks():
        assert data == LAST_LINE
        break
    settling = asyncio.create_task(response.settle())
    await eventually(lambda: response._waiter is not None)  # it waits for the end marker
    assert not settling.done()
    marker_may_go.set()
    await asyncio.wait_for(settling, 5)
    assert client.in_use == 0 and client.draining == 0
    assert await (await client.request("POST", "/next", b"{}")).read() == b"/next"
    assert carrier(server, "/stream") is carrier(server, "/next")  # the newest, again
    assert server.accepted == 2


async def test_settle_gives_up_after_its_bound_and_leaves_the_rest_to_the_drain(serve, pool) -> None:
    never = asyncio.Event()
    server = await serve(held_end_marker(never))
    client = pool(server.url())
    response = await client.request("POST", "/stream", b"{}")
    async for _ in response.chunks():
        break
    await asyncio.wait_for(response.settle(0.05), 5)
    assert client.draining == 1  # released: drained for up to DRAIN_SECONDS, as before
    never.set()
    await eventually(lambda: client.draining == 0 and client.in_use == 0)
    assert server.accepted == 1


async def test_settle_on_a_complete_answer_returns_at_once(serve, pool) -> None:
    server = await serve(held_end_marker(asyncio.Event()))
    client = pool(server.url())
    response = await client.request("POST", "/whole", b"{}")
    assert await response.read() == b"/whole"
    await asyncio.wait_for(response.settle(60), 1)
    assert client.in_use == 0
