"""h11, the strict pure-Python HTTP/1.1 implementation, as the oracle: what it makes of a byte
stream of requests (as a server) or of one answer (as a client), in a shape the tests compare
with what corral made of the same bytes.

h11 only judges syntax here: its buffer limit is raised far above corral's, so a head that is
merely large is corral's to refuse (and documented as such), not h11's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11

BIG = 1 << 22


def joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Fields by lower-case name, repeated ones joined with ", " in order: the shape corral's
    parsers give their callers (RFC 9110 §5.3 allows the join for list-valued fields)."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _text(pairs: object) -> list[tuple[str, str]]:
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in pairs]  # type: ignore[attr-defined]


@dataclass
class Request:
    method: str
    target: str
    version: str
    fields: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


@dataclass
class Requests:
    """The requests h11 reads from a stream, in order, and how the stream ends after them:
    ``clean`` (no byte left), ``closed`` (the last one ends the connection: later bytes are not
    read), ``incomplete`` (the start of one more) or ``malformed`` (h11 refuses what follows)."""

    messages: list[Request]
    end: str
    error: str = ""


def requests(data: bytes) -> Requests:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=BIG)
    conn.receive_data(data)
    messages: list[Request] = []
    current: Request | None = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return Requests(messages, "malformed", str(exc))
        if event is h11.NEED_DATA:
            pending = current is not None or bool(conn.trailing_data[0])
            return Requests(messages, "incomplete" if pending else "clean")
        if isinstance(event, h11.Request):
            current = Request(
                event.method.decode("latin-1"),
                event.target.decode("latin-1"),
                event.http_version.decode("latin-1"),
                _text(event.headers),
            )
        elif isinstance(event, h11.Data) and current is not None:
            current.body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage) and current is not None:
            current.trailers = _text(event.headers)
            messages.append(current)
            current = None
            conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return Requests(messages, "closed")
            conn.start_next_cycle()


def alone(data: bytes) -> bool:
    """``data`` is exactly one whole request h11 accepts (with nothing after it)."""
    parsed = requests(data)
    return len(parsed.messages) == 1 and parsed.end in ("clean", "closed")


@dataclass
class Response:
    """What h11 makes of one answer to a GET: ``status`` is 0 when it refuses the bytes
    (``error`` says why) or they end before the answer does."""

    status: int = 0
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool = False  # both sides may send another request on the connection
    leftover: bytes = b""  # bytes after the answer (which no request asked for)
    error: str = ""


def response(data: bytes, *, closed: bool) -> Response:
    """h11's reading of ``data`` as the answer to ``GET /first``; ``closed``: the upstream closes
    the connection after the bytes."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=BIG)
    conn.send(h11.Request(method="GET", target="/first", headers=[("Host", "upstream")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if closed:
        conn.receive_data(b"")
    got = Response()
    status = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return Response(error=str(exc))
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return Response(error="the answer ends before it is complete")
        if isinstance(event, h11.Response):
            status = event.status_code
            got.fields = _text(event.headers)
        elif isinstance(event, h11.Data):
            got.body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            got.status = status
            got.keep_alive = conn.our_state is h11.DONE and conn.their_state is h11.DONE
            got.leftover = bytes(conn.trailing_data[0])
            return got
