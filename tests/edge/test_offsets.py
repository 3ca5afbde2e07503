"""The offset helpers the edge checks request lines with (``corral.edge.offsets``)."""

from __future__ import annotations

import pytest

from corral.edge.offsets import chunked_end, crlf2_end, skip_empty_lines

HEAD = b"POST /v1/x HTTP/1.1\r\nHost: a\r\n\r\n"


def test_skip_empty_lines() -> None:
    assert skip_empty_lines(b"GET", 0) == 0
    assert skip_empty_lines(b"\r\n\n\rGET", 0) == 4
    assert skip_empty_lines(b"ab\r\nGET", 2) == 4
    assert skip_empty_lines(b"\r\n", 0) == 2


def test_crlf2_end_finds_the_first_that_ends_after_at() -> None:
    data = b"x\r\n\r\nyy\r\n\r\n"
    assert crlf2_end(data, 0) == 5
    assert crlf2_end(data, 5) == len(data)
    assert crlf2_end(b"no end\r\n", 0) == -1


@pytest.mark.parametrize(("before", "data", "end"), [(b"0\r", b"\n\r\nGET", 3), (b"\r\n\r", b"\nGET", 1)])
def test_crlf2_end_across_reads(before: bytes, data: bytes, end: int) -> None:
    assert crlf2_end(data, 0, before) == end


@pytest.mark.parametrize(
    "body",
    [
        b"0\r\n\r\n",
        b"2\r\nok\r\n0\r\n\r\n",
        b"002;a=b\r\nok\r\n1\r\n!\r\n0;last\r\n\r\n",
        b"4\r\n\r\n\r\n\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
        b"a\r\n0123456789\r\n0\r\n\r\n",
    ],
)
def test_chunked_end(body: bytes) -> None:
    data = HEAD + body + b"GET / HTTP/1.1\r\n"
    assert chunked_end(data, len(HEAD)) == len(HEAD) + len(body)


def test_chunked_end_of_a_body_not_all_there() -> None:
    assert chunked_end(HEAD + b"5\r\nab", len(HEAD)) == -1
    assert chunked_end(HEAD + b"0\r\n\r", len(HEAD)) == -1
