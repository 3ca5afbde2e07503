"""Where a request's bytes are in a read, which llhttp (through httptools) does not say.

RFC 9112 §3 wants exactly one SP between a request line's method, target and version. llhttp
takes any number (its request-line states loop over SP; no leniency flag governs that, and the
flags it has only loosen it), and no callback sees the spaces: ``on_url`` gets the target alone.
So the line is checked against the read itself, which needs the offset at which its request
begins:

- A request that begins a feed begins at its start, after the empty lines llhttp skips:
  known at no cost. The edge feeds a read that begins inside a body in two parts, the body's
  end and the rest, so a request pipelined behind such a body begins a feed too.
- One pipelined behind a request that began (or whose head ended) in the same read begins
  where that one ended: the end of its head (the first CRLFCRLF after its start, as llhttp
  accepted the head whole), then its Content-Length, or a walk over its chunk-size lines. That
  work is done for pipelined requests only, over the bytes of the request before.

Given the offset, the check (``EdgeProtocol._check_head``) is two byte comparisons, no scan.
"""

from __future__ import annotations

CRLF2 = b"\r\n\r\n"


def skip_empty_lines(data: bytes, at: int) -> int:
    """The first offset from ``at`` that is not CR or LF (llhttp skips those before a request)."""
    n = len(data)
    while at < n and data[at] in (10, 13):
        at += 1
    return at


def crlf2_end(data: bytes, at: int, before: bytes = b"") -> int:
    """The end of the first CRLFCRLF in ``data`` that ends after ``at``, or -1; ``before``
    holds the (up to 3) bytes that came just before ``data[at]``, for one that straddles.

    Every head and chunked body ends with a CRLFCRLF that follows a byte other than CR or LF
    (the last byte of a field line or of the last-chunk line), so no other CRLFCRLF overlaps
    it: searching on from the end of an earlier one cannot step over it."""
    if before:
        i = (before + data[at : at + 3]).find(CRLF2)
        if i >= 0:
            return at + i + 4 - len(before)
    i = data.find(CRLF2, at)
    return i + 4 if i >= 0 else -1


def chunked_end(data: bytes, at: int) -> int:
    """The end of the chunked body that begins at ``data[at]`` and ends in ``data``, or -1.
    llhttp has read the body whole, so each chunk-size line is hex digits, perhaps an
    extension, then CRLF, and the trailer section ends at the first CRLFCRLF."""
    while True:
        line = data.find(b"\r\n", at)
        if line < 0:
            return -1
        try:
            size = int(data[at:line].partition(b";")[0], 16)
        except ValueError:
            return -1
        if size == 0:
            end = data.find(CRLF2, line)
            return end + 4 if end >= 0 else -1
        at = line + 2 + size + 2
