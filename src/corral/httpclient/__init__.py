"""corral's upstream HTTP/1.1 client: one keep-alive pool per upstream, nothing else.

Small on purpose: it speaks only what gateways send upstream (a request with a bytes body) and
reads answers as they arrive, with every timeout explicit and the pool bounded. Parsing is
httptools (llhttp, the parser Node.js uses); connections are asyncio protocols, so a request
costs a buffer write and a few callbacks instead of a general-purpose client's machinery.
"""

from corral.httpclient.errors import (
    BadResponse,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    ReadTimeout,
    TLSFailed,
    TooLarge,
    TransportError,
)
from corral.httpclient.pool import Pool
from corral.httpclient.response import Response

__all__ = [
    "BadResponse",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "Pool",
    "ReadTimeout",
    "Response",
    "TLSFailed",
    "TooLarge",
    "TransportError",
]
