from __future__ import annotations

import pytest

from corral.edge import wire


def test_head_of_a_whole_answer() -> None:
    head = wire.head(200, "application/json", {"x-a": "1"}, "Thu, 01 Jan 2026 00:00:00 GMT", 12, True)
    assert head == (
        b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Type: application/json\r\n"
        b"Content-Length: 12\r\nx-a: 1\r\n\r\n"
    )


def test_head_of_a_stream_that_closes() -> None:
    head = wire.head(503, "text/event-stream", {}, "D", None, False)
    assert head == (
        b"HTTP/1.1 503 Service Unavailable\r\nDate: D\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"x-model": "a\r\nSet-Cookie: x=1"},
        {"x-model": "a\nb"},
        {"x-model": "a\rb"},
        {"x-a\r\nSet-Cookie": "1"},
    ],
)
def test_head_refuses_line_breaks(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        wire.head(200, "application/json", headers, "D", 0, True)


def test_chunk_framing() -> None:
    assert wire.chunk(b"hello") == b"5\r\nhello\r\n"
    assert wire.chunk(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert wire.LAST_CHUNK == b"0\r\n\r\n"
