"""Request bodies in memory: one budget for both listeners, and bounded reads on the control plane.

``BodyBudget`` is ``server.max_buffered_bytes``: the request-body bytes the whole process holds
at once, every connection of both planes together. The edge counts the data plane's bodies in
it as it reads them; ``read_body`` counts the control plane's (aiohttp) the same way, so a
caller with any key cannot hold more than the budget by sending large bodies to the admin API
or the console instead of the data plane.

``read_body(request, limit)`` reads a body piece by piece as it arrives and stops at the route's
own ``limit`` (413; checked against ``Content-Length`` before reading, and while reading a
chunked body), or when the budget is spent (503). What it took is given back when the request
ends (``release_bodies``, a control-plane middleware), which also ends the connection after an
answer that left a body unread, so corral never reads on to drain a body it refused. A client
that hangs up mid-body is ``ClientClosed`` (499, never sent), not an internal error.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from corral.errors import BodyTooLarge, ClientClosed, ServerBusy


class BodyBudget:
    """Bytes of request bodies held now (``held``) against ``limit``."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes; False (nothing counted) when that would pass the limit."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
_HELD = web.RequestKey("body_bytes_held", int)


def too_large(limit: int, length: int | None = None) -> BodyTooLarge:
    size = f"is {length} bytes" if length is not None else f"is over {limit} bytes"
    return BodyTooLarge(
        f"The request body {size}; this route accepts at most {limit}. Send less.", code="body_too_large"
    )


def busy() -> ServerBusy:
    return ServerBusy(
        "corral is holding as many request bodies in memory as it may (server.max_buffered_bytes); "
        "retry shortly.",
        code="server_busy",
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body of ``request``, at most ``limit`` bytes, counted in the app's budget."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit, length)
    budget = request.app.get(BODY_BUDGET)
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            if budget is not None:
                if not budget.take(len(chunk)):
                    raise busy()
                request[_HELD] = request.get(_HELD, 0) + len(chunk)
            parts.append(chunk)
    except ConnectionError:
        raise ClientClosed(
            "The client closed the connection before the whole request body arrived.", code="client_closed"
        ) from None
    return b"".join(parts)


@web.middleware
async def release_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give back what ``read_body`` took once the handler is done; close the connection after an
    answer that left the body unread (aiohttp would otherwise read on to drain it)."""
    try:
        response = await handler(request)
    finally:
        held = request.pop(_HELD, 0)
        budget = request.app.get(BODY_BUDGET)
        if held and budget is not None:
            budget.give(held)
    if not request.content.is_eof() and not response.prepared:
        response.force_close()
    return response


__all__ = ["BODY_BUDGET", "BodyBudget", "read_body", "release_bodies"]
