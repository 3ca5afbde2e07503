"""How an exchange with an upstream can fail, below HTTP status codes.

    TransportError
    ├── ConnectFailed        refused, unreachable, DNS
    │   └── TLSFailed        the certificate did not verify
    ├── ConnectTimeout       no connection (or pool slot) within connect_timeout  (also a TimeoutError)
    ├── ReadTimeout          the upstream went quiet for longer than read_timeout  (also a TimeoutError)
    ├── Disconnected         the connection closed before the answer was complete
    ├── BadResponse          the bytes are not HTTP/1.1 corral can read
    └── TooLarge             more bytes than a limit allows (the connection is closed, not reused)

``corral.providers.upstream`` maps these to the ``UpstreamError`` family at one place.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class: the request did not get a complete, well-formed answer."""


class ConnectFailed(TransportError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TLSFailed(ConnectFailed):
    pass


class ConnectTimeout(TransportError, TimeoutError):
    pass


class ReadTimeout(TransportError, TimeoutError):
    pass


class Disconnected(TransportError):
    def __init__(self, message: str, *, before_response: bool, request_sent: bool = True) -> None:
        super().__init__(message)
        # True when not one byte of the answer arrived.
        self.before_response = before_response
        # False when not one byte of the request was written: it can go on another connection
        # whatever its method. Once written, only an idempotent request may be sent again.
        self.request_sent = request_sent


class BadResponse(TransportError):
    pass


class TooLarge(TransportError):
    """The upstream sent more than a limit allows: ``what`` (e.g. "an answer", "a stream line")
    went over ``limit`` bytes. Whoever raises it has closed the connection."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} over {limit} bytes")
        self.what = what
        self.limit = limit
