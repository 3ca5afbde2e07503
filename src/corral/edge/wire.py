"""Bytes of an HTTP/1.1 answer head: status line, headers, framing.

Header values come from corral (ids, provider and model names, Retry-After); a name or value
that could break the head (CR, LF) is refused here, the one place heads are built.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

_REASONS = {s.value: s.phrase for s in HTTPStatus}


class Clock:
    """The ``Date`` header, formatted at most once a second."""

    __slots__ = ("_at", "_value")

    def __init__(self) -> None:
        self._at = 0
        self._value = ""

    def date(self) -> str:
        now = int(time.time())
        if now != self._at:
            self._at = now
            self._value = formatdate(now, usegmt=True)
        return self._value


def head(
    status: int,
    content_type: str,
    headers: dict[str, str],
    date: str,
    length: int | None,
    keep_alive: bool,
    http10: bool = False,
) -> bytes:
    """The head of an answer with ``length`` body bytes, or chunked when ``length`` is None
    (to an HTTP/1.0 client, which has no chunked framing: ended by closing the connection)."""
    reason = _REASONS.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}\r\nDate: {date}\r\nContent-Type: {content_type}\r\n"]
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    elif not http10:
        lines.append("Transfer-Encoding: chunked\r\n")
    if not keep_alive or (http10 and length is None):
        lines.append("Connection: close\r\n")
    elif http10:
        lines.append("Connection: keep-alive\r\n")
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} has a line break in its value")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
