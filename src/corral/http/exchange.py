"""One data-plane request as its handler sees it, whichever server received it.

The hot routes (chat, completions, embeddings on both surfaces) are written once, against
``Exchange``: its path, its headers (looked up by lower-case name), its body, the app's parts
and its ids, and ``write(reply)``. ``AiohttpExchange`` adapts an aiohttp request (the in-process
app, and every route that is not hot); ``corral.edge`` has its own for the lean server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from corral.core.call import Reply
from corral.errors import BodyTooLarge
from corral.http.replies import write_reply
from corral.http.request_ids import CLIENT_REQUEST_ID, REQUEST_ID, client_id_of, new_request_id


class Exchange:
    """The request (path, headers, body) and how to answer it. Subclasses implement ``body``
    and ``write``."""

    __slots__ = ("app", "client_request_id", "headers", "path", "request_id")

    def __init__(self, path: str, headers: Mapping[str, str], app: Mapping[Any, Any]) -> None:
        self.path = path
        self.headers = headers  # get() with lower-case names
        self.app = app  # the aiohttp Application: its AppKeys hold the gateway's parts
        self.request_id = new_request_id()
        self.client_request_id = client_id_of(headers.get("x-request-id"))

    async def body(self, limit: int) -> bytes:
        raise NotImplementedError

    async def write(self, reply: Reply) -> None:
        raise NotImplementedError


HotRoute = Callable[[Exchange], Awaitable[None]]  # a hot route's handler, served by either server


class AiohttpExchange(Exchange):
    __slots__ = ("_request", "response")

    def __init__(self, request: web.Request) -> None:
        super().__init__(request.path, request.headers, request.app)
        self._request = request
        request[REQUEST_ID] = self.request_id  # the error middleware's envelope carries the ids
        if self.client_request_id is not None:
            request[CLIENT_REQUEST_ID] = self.client_request_id
        self.response: web.StreamResponse | None = None

    async def body(self, limit: int) -> bytes:
        return await read_body(self._request, limit)

    async def write(self, reply: Reply) -> None:
        self.response = await write_reply(self._request, reply, self.request_id, self.client_request_id)

    def answer(self) -> web.StreamResponse:
        if self.response is None:  # a handler that returned without writing is a bug
            raise RuntimeError(f"no answer was written for {self.path}")
        return self.response


def too_large(limit: int, length: int | None = None) -> BodyTooLarge:
    size = f"is {length} bytes" if length is not None else f"is over {limit} bytes"
    more = f"; this gateway accepts at most {limit}" if length is not None else ""
    return BodyTooLarge(
        f"The request body {size}{more}. Send less, or raise server.max_request_bytes.",
        code="body_too_large",
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body of an aiohttp request, refused (413) above ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit, length)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
