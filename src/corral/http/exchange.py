"""One data-plane request as its handler sees it.

Every data-plane route is written once, against ``Exchange``: its method, path and query, its
headers (looked up by lower-case name), its body, the caller (authenticated from the head by
the server, before the body was read), its ids, and ``write(reply)``. What a handler serves
from (the gateway, accounting) it was given when it was built, not through the exchange.
``corral.edge`` implements it; tests may implement it in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

from corral.core.call import Reply
from corral.errors import BodyTooLarge
from corral.http.request_ids import client_id_of, new_request_id
from corral.keys.principal import Principal


class Exchange:
    """The request (method, path, query, headers, body) and how to answer it. Subclasses
    implement ``body`` and ``write``."""

    __slots__ = (
        "client_request_id", "headers", "method", "path", "principal", "query", "request_id", "rest",
    )  # fmt: skip

    def __init__(
        self,
        path: str,
        headers: Mapping[str, str],
        *,
        method: str = "POST",
        query: str = "",
        principal: Principal | None = None,
        rest: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.query = query  # the raw query string, without '?'
        self.rest = rest  # a prefix route's remainder (e.g. the model in /v1/models/<model>)
        self.headers = headers  # get() with lower-case names
        self.principal = principal  # set by the server when the route needs a key
        self.request_id = new_request_id()
        self.client_request_id = client_id_of(headers.get("x-request-id"))

    def query_values(self, name: str) -> list[str]:
        return parse_qs(self.query).get(name, []) if self.query else []

    async def body(self, limit: int) -> bytes:
        raise NotImplementedError

    async def write(self, reply: Reply) -> None:
        raise NotImplementedError


def too_large(limit: int, length: int | None = None) -> BodyTooLarge:
    size = f"is {length} bytes" if length is not None else f"is over {limit} bytes"
    more = f"; this gateway accepts at most {limit}" if length is not None else ""
    return BodyTooLarge(
        f"The request body {size}{more}. Send less, or raise server.max_request_bytes.",
        code="body_too_large",
    )
