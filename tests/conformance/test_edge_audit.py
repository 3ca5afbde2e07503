"""The parsing faults the audit found in the edge, one test each, written to fail on the edge as
it was before the fixes (commit e92c727) and to pass since (``5931fa2``):

(a) chunked trailers are bounded: an endless trailer field, or too many of them, get 431 and
    the connection closed, instead of growing memory;
(b) trailer fields never reach the fields the handler sees;
(c) an HTTP/1.1 request needs exactly one Host (400);
(d) HTTP/2.0 (and 0.9) on the HTTP/1 parser is refused (505);
(e) two Authorization (or X-Api-Key) fields are refused (400);
(f) a stream answered to HTTP/1.0 is not chunked but ends with the connection, and a 1.0
    keep-alive request answered keep-alive says ``Connection: keep-alive``;
(g) an idle connection that sends a CRLF now and then is still closed by the keep-alive timer.
"""

from __future__ import annotations

import asyncio

import pytest

from corral.edge.server import KEEPALIVE_TIMEOUT
from corral.http.limits import MAX_HEAD, MAX_HEADERS
from tests.conformance.harness import TIMEOUT, Edge
from tests.conformance.messages import HOT_PATH, STREAM_PATH

START = 1000.0
CHUNKED = f"POST {HOT_PATH} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n".encode()


def post(
    path: str = HOT_PATH, *, version: str = "1.1", fields: str = "Host: test\r\n", body: bytes = b""
) -> bytes:
    return f"POST {path} HTTP/{version}\r\n{fields}Content-Length: {len(body)}\r\n\r\n".encode() + body


class Clock:
    """What the server's ``now`` returns: time moves only when the test moves it."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> float:
        return self.at


# -- (a) bounded trailers -----------------------------------------------------------------------


async def test_a_an_endless_trailer_field_gets_431_and_a_close(edge: Edge) -> None:
    conv = await edge.connect()
    conv.write(CHUNKED + b"\r\n2\r\nhi\r\n0\r\nX-Endless: ")
    sent = 0
    while sent < 4 * MAX_HEAD and not conv.data and not conv.ended:
        conv.write(b"a" * 8192)
        sent += 8192
        await asyncio.sleep(0)  # let the server read: pacing, not a synchronisation
    try:
        async with asyncio.timeout(TIMEOUT):
            await conv.wait(lambda: conv.ended)
    except TimeoutError:
        raise AssertionError(f"no answer and no close after {sent} bytes of one trailer field") from None
    answers = conv.answers()
    assert [a.status for a in answers] == [431], f"after {sent} bytes of one trailer field: {answers}"
    assert answers[0].headers["connection"] == "close"
    assert edge.recorder.seen == []


async def test_a_too_many_trailer_fields_get_431(edge: Edge) -> None:
    trailers = b"".join(b"X-T%d: v\r\n" % i for i in range(MAX_HEADERS + 5))
    out = await edge.converse([CHUNKED + b"\r\n2\r\nhi\r\n0\r\n" + trailers + b"\r\n"], 1)
    assert [a.status for a in out.answers] == [431]
    assert out.seen == []


# -- (b) trailers never merged ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "trailer"),
    [
        (b"", b"Authorization: Bearer x"),
        (b"", b"X-Api-Key: k"),
        (b"Authorization: Bearer good\r\n", b"Authorization: Bearer evil"),
        (b"X-Request-Id: mine\r\n", b"X-Request-Id: theirs"),
        (b"", b"Host: evil.example"),
    ],
)
async def test_b_trailer_fields_never_reach_the_handlers_fields(
    edge: Edge, head: bytes, trailer: bytes
) -> None:
    data = CHUNKED + head + b"\r\n2\r\nhi\r\n0\r\n" + trailer + b"\r\n\r\n"
    out = await edge.converse([data], 1)
    assert [a.status for a in out.answers] == [200]
    (seen,) = out.seen
    expected = {"host": "test", "transfer-encoding": "chunked"}
    if head:
        name, _, value = head.decode().strip().partition(": ")
        expected[name.lower()] = value
    assert seen.headers == expected
    assert seen.body == b"hi"


async def test_b_a_content_length_trailer_is_refused(edge: Edge) -> None:
    out = await edge.converse([CHUNKED + b"\r\n2\r\nhi\r\n0\r\nContent-Length: 5\r\n\r\n"], 1)
    assert [a.status for a in out.answers] == [400]
    assert out.seen == []


# -- (c) Host -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", ["", "Host: a\r\nHost: b\r\n", "Host: a\r\nhost: a\r\n"])
async def test_c_http11_needs_exactly_one_host(edge: Edge, fields: str) -> None:
    out = await edge.converse([post(fields=fields)], 1)
    assert [(a.status, a.headers.get("connection")) for a in out.answers] == [(400, "close")]
    assert out.seen == []


async def test_c_http10_may_leave_host_out(edge: Edge) -> None:
    out = await edge.converse([post(version="1.0", fields="")], 1)
    assert [a.status for a in out.answers] == [200]


# -- (d) versions -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "0.9", "1.2", "3.0"])
async def test_d_versions_other_than_10_and_11_are_refused(edge: Edge, version: str) -> None:
    out = await edge.converse([post(version=version)], 1)
    assert [a.status for a in out.answers] in ([505], [400])
    assert out.answers[0].headers["connection"] == "close"
    assert out.seen == []


# -- (e) single fields given twice ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["Authorization", "X-Api-Key"])
async def test_e_a_key_field_given_twice_is_refused(edge: Edge, name: str) -> None:
    fields = f"Host: test\r\n{name}: Bearer one\r\n{name.lower()}: Bearer two\r\n"
    out = await edge.converse([post(fields=fields)], 1)
    assert [(a.status, a.headers.get("connection")) for a in out.answers] == [(400, "close")]
    assert out.seen == []


# -- (f) HTTP/1.0 answers -----------------------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [False, True])
async def test_f_a_stream_to_http10_ends_with_the_connection(edge: Edge, keep_alive: bool) -> None:
    fields = "Connection: keep-alive\r\n" if keep_alive else ""
    out = await edge.converse([post(STREAM_PATH, version="1.0", fields=fields)], 1)
    (answer,) = out.answers
    assert "transfer-encoding" not in answer.headers and "content-length" not in answer.headers
    assert answer.headers["connection"] == "close"
    assert answer.body == b"onetwo"  # read until the close


async def test_f_http10_keep_alive_is_echoed_and_kept(edge: Edge) -> None:
    request = post(version="1.0", fields="Connection: keep-alive\r\n")
    out = await edge.converse([request, request], 2)
    assert [a.status for a in out.answers] == [200, 200]
    assert [a.headers.get("connection") for a in out.answers] == ["keep-alive", "keep-alive"]
    assert len(out.seen) == 2


# -- (g) keep-alive timer -------------------------------------------------------------------------


async def test_g_crlfs_between_requests_do_not_keep_a_connection_alive(edge: Edge) -> None:
    clock = edge.server.now = Clock()
    assert 60 < KEEPALIVE_TIMEOUT < 90
    conv = await edge.connect()
    conv.write(post())
    async with asyncio.timeout(TIMEOUT):
        await conv.wait(lambda: len(conv.answers()) == 1)
        (conn,) = edge.server.connections
        for step in (1, 2, 3):  # 30, 60, 90 s after the answer, with nothing but CRLFs
            clock.at = START + 30 * step
            conv.write(b"\r\n")
            while conn.last_io != clock.at:  # read, so still open after the sweep before
                await asyncio.sleep(0.005)
            edge.server.sweep(clock.at)
    try:
        async with asyncio.timeout(TIMEOUT):
            await conv.wait(lambda: conv.ended)
    except TimeoutError:
        raise AssertionError("still open 90 s after the last answer: the CRLFs kept it alive") from None
    assert [a.status for a in conv.answers()] == [200]
