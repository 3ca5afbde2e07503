"""How an exchange with an upstream can fail, below HTTP status codes.

    TransportError
    ├── ConnectFailed        refused, unreachable, DNS
    │   └── TLSFailed        the certificate did not verify
    ├── ConnectTimeout       no connection (or pool slot) within connect_timeout  (also a TimeoutError)
    ├── ReadTimeout          the upstream went quiet for longer than read_timeout  (also a TimeoutError)
    ├── Disconnected         the connection closed before the answer was complete
    └── BadResponse          the bytes are not HTTP/1.1 corral can read

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
    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        # True when not one byte of the answer arrived: a reused keep-alive connection that the
        # server had already closed can then be retried once on a fresh one.
        self.before_response = before_response


class BadResponse(TransportError):
    pass
