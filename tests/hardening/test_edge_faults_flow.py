"""Hostile-input audit of the data plane, flow side: clients that do not read, hang up, or
trickle (faults 5, 6, 9 and 13 of the audit).

The time limits are driven through the edge's own sweeper with a fake clock (``server.now``),
and what the server has read is seen in the kernel's socket table, so nothing here waits on a
sleep. A test marked ``audit_fault`` failed, for the reason it names, before its fault was fixed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from tests.emulators.common import Fault, RecordedRequest
from tests.hardening.rawclient import (
    Fleet,
    RawConnection,
    Reset,
    audit_fault,
    bearer,
    request,
    server_side,
    start_fleet,
    wait_read,
    wait_until,
)

CHAT = "/v1/chat/completions"
SEND_TIMEOUT = 1.0  # server.send_timeout in the strict gateway
SMALL_RCVBUF = 4096  # a client that does not read stops the server's writes after ~3 MB of kernel buffers
MAX_BUFFERED = 256 * 1024  # server.max_buffered_bytes in the strict gateway
KEEPALIVE = 75.0  # corral.edge.server.KEEPALIVE_TIMEOUT
BODY_STALL = 60.0  # corral.edge.server.BODY_TIMEOUT: the longest wait for the next body byte


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Module-scoped here: one gateway of each kind per loop for the whole module."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def strict(loop_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """``up`` has two slots; writes give up after ``SEND_TIMEOUT``; bodies held at once are
    capped at ``MAX_BUFFERED``; a request waits at most 0.5 s for a slot; usage is recorded."""
    started = start_fleet(
        loop_kind,
        home=tmp_path_factory.mktemp("home"),
        max_parallel=2,
        router={"queue_timeout": "0.5s"},
        server={
            "send_timeout": SEND_TIMEOUT,
            "max_request_bytes": MAX_BUFFERED,
            "max_buffered_bytes": MAX_BUFFERED,
        },
    )
    yield started
    started.stop()


@pytest.fixture(scope="module")
def patient(loop_kind: str) -> Iterator[Fleet]:
    """The default limits (a client that stops reading has a minute before it is cut)."""
    started = start_fleet(loop_kind)
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def _reset_upstreams(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("strict", "patient"):
        if name in request.fixturenames:
            fleet: Fleet = request.getfixturevalue(name)
            fleet.emulator.fault = None
            fleet.emulator.model_faults.clear()


def chat(model: str, text: str = "hi", **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra})


def gone(server_port: int, client_port: int) -> Callable[[], bool]:
    """The server's end of the connection is closed (or closing)."""

    def check() -> bool:
        entry = server_side(server_port, client_port)
        return entry is None or entry.state != "ESTABLISHED"

    return check


# -- fault 6: back-pressure on whole answers -----------------------------------------------------


def settled(count: Callable[[], int], bound: int, quiet: float = 0.5, timeout: float = 10.0) -> int:
    """``count()`` once it reaches ``bound`` or stops changing for ``quiet`` s (a stalled server).
    Only a fault can make it reach the bound; a fixed server settles below it."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while (now := count()) < bound and time.monotonic() < deadline:
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.01)
    return count()


@audit_fault(6, "whole answers are written without waiting for the client to read")
def test_pipelined_requests_wait_while_the_client_does_not_read(patient: Fleet) -> None:
    fleet = patient
    n = 30
    # ~0.5 MB per answer: 30 of them is 15 MB; kernel buffers take ~3 MB, so a server that
    # respects the client's pace has called the upstream well under n / 2 times
    body = orjson.dumps(
        {"model": "up/text-embedding-3-small", "dimensions": 8192, "input": [f"x{i}" for i in range(6)]}
    )

    def served() -> int:
        return len(fleet.emulator.requests_to("/embeddings"))

    before = served()
    with RawConnection(fleet.port, rcvbuf=SMALL_RCVBUF, timeout=20) as c:
        c.send(request("POST", "/v1/embeddings", body, headers=bearer(fleet.key)) * n)
        reached = settled(lambda: served() - before, n // 2)
        assert reached < n // 2, f"{reached} of {n} answers made for a client that reads none"
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        statuses = [c.response().status for _ in range(n)]  # and once it reads, all are answered
    assert statuses == [200] * n
    assert served() - before == n


# -- fault 9: slots are not held by clients that do not read or that leave ---------------------


def streams_recorded(fleet: Fleet) -> list[dict[str, object]]:
    return [r for r in fleet.usage() if r["streamed"] and r["requested_model"] == "up/gpt-4o-mini"]


@audit_fault(9, "a stream to a client that never reads holds its slot without a time limit", TimeoutError)
def test_streams_to_clients_that_never_read_are_cut_and_free_their_slots(strict: Fleet) -> None:
    fleet = strict
    words = " ".join(["a"] * 40000)  # some 10 MB of events: far more than the buffers hold
    clients = [RawConnection(fleet.port, rcvbuf=SMALL_RCVBUF) for _ in range(2)]
    try:
        for c in clients:
            c.send(
                request("POST", CHAT, chat("up/gpt-4o-mini", words, stream=True), headers=bearer(fleet.key))
            )
        wait_until(lambda: fleet.in_flight() == 2, what="both streams holding a slot")
        wait_until(lambda: fleet.in_flight() == 0, timeout=8 * SEND_TIMEOUT, what="the slots freed")
        for c in clients:
            wait_until(gone(fleet.port, c.local_port), what="the stalled connection closed")
        wait_until(lambda: len(streams_recorded(fleet)) == 2, what="both cut streams recorded")
    finally:
        for c in clients:
            c.close()
    with RawConnection(fleet.port) as c:
        assert (
            c.request(request("POST", CHAT, chat("up/gpt-4o-mini"), headers=bearer(fleet.key))).status == 200
        )


@audit_fault(9, "a client that hangs up does not cancel its upstream call", TimeoutError)
def test_a_client_that_hangs_up_cancels_its_upstream_call_at_once(strict: Fleet) -> None:
    fleet = strict
    fleet.emulator.model_faults["slow-model"] = Fault("hang_before_headers", seconds=10, times=1)

    def upstream_calls() -> list[RecordedRequest]:
        calls = fleet.emulator.requests_to("/chat/completions")
        return [r for r in calls if isinstance(r.json, dict) and r.json.get("model") == "slow-model"]

    with RawConnection(fleet.port) as c:
        c.send(request("POST", CHAT, chat("up/slow-model"), headers=bearer(fleet.key)))
        wait_until(
            lambda: fleet.in_flight() == 1 and bool(upstream_calls()), what="the call holding its slot"
        )
        upstream = upstream_calls()[0]
        c.abort()
    wait_until(lambda: fleet.in_flight() == 0, what="the slot freed")
    wait_until(gone(fleet.upstream.port, upstream.peer[1]), what="the upstream connection closed")

    def recorded() -> list[int]:
        return [r["status"] for r in fleet.usage() if r["requested_model"] == "up/slow-model"]

    wait_until(lambda: recorded() == [499], what="the call recorded as the client's leaving")


# -- fault 5: bodies in flight are bounded in bytes and in time ---------------------------------


@audit_fault(5, "request bodies held in memory have no total bound", TimeoutError)
def test_bodies_held_at_once_are_bounded(strict: Fleet) -> None:
    fleet = strict
    size = MAX_BUFFERED * 3 // 4  # one fits; two at once do not
    head = request("POST", CHAT, headers=bearer(fleet.key) + f"Content-Length: {size}\r\n")
    piece = 8192
    body = chat("demo/echo").ljust(size)  # JSON, padded with whitespace
    with RawConnection(fleet.port, timeout=2) as first, RawConnection(fleet.port, timeout=2) as second:
        first.send(head + body[:-1])
        wait_read(fleet.port, first.local_port)  # held: all but its last byte
        second.send(head)
        _, refused = second.send_until_refused(b" " * piece, size - piece, fleet.port)  # never whole
        try:
            assert second.response().status == 503, "the second body was not refused"
        except Reset:
            assert refused  # refused with a reset before its 503 could be read
        first.send(body[-1:])
        assert first.response().status == 200


class FakeClock:
    """What the edge's ``now`` returns while a test drives its sweeper; starts at the real
    monotonic time, so connections of earlier tests are not suddenly old."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock(strict: Fleet) -> Iterator[FakeClock]:
    edge = strict.edge()
    real = edge.now
    edge.now = fake = FakeClock()
    yield fake
    edge.now = real


@audit_fault(5, "a body trickled in just under the stall limit is never cut", TimeoutError)
def test_a_trickled_body_is_cut_at_a_whole_body_deadline(strict: Fleet, clock: FakeClock) -> None:
    fleet = strict
    with RawConnection(fleet.port, timeout=2) as c:
        c.send(request("POST", CHAT, headers=bearer(fleet.key) + "Content-Length: 100\r\n") + b"{")
        wait_read(fleet.port, c.local_port)
        for _ in range(20):  # one byte every 55 s for over 18 minutes: never a stall, never whole
            clock.at += BODY_STALL - 5
            try:
                c.send(b" ")
            except ConnectionError:
                break  # cut already
            wait_read(fleet.port, c.local_port)
            fleet.sweep(clock.at)
        c.rest()  # the server ended the connection (an answer before the close is allowed)


@audit_fault(13, "bytes between requests count as activity on an idle connection", TimeoutError)
def test_stray_crlf_does_not_keep_an_idle_connection_open(strict: Fleet, clock: FakeClock) -> None:
    fleet = strict
    with RawConnection(fleet.port, timeout=2) as c:
        assert c.request(request("POST", CHAT, chat("demo/echo"), headers=bearer(fleet.key))).status == 200
        for _ in range(4):  # idle since the answer, a CRLF every 20 s
            clock.at += 20
            c.send(b"\r\n")
            wait_read(fleet.port, c.local_port)
        fleet.sweep(clock.at)
        assert c.closed()


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(strict: Fleet, clock: FakeClock) -> None:
    """The control for the test above: without stray bytes, the same sweep closes it."""
    fleet = strict
    with RawConnection(fleet.port, timeout=2) as c:
        assert c.request(request("POST", CHAT, chat("demo/echo"), headers=bearer(fleet.key))).status == 200
        fleet.sweep(clock.at + KEEPALIVE + 1)
        assert c.closed()
