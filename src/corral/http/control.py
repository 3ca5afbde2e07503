"""Guards of the control-plane listener (aiohttp): the same head rules the edge applies on the
data plane, and answers that do not name the server's software or version."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from corral.errors import InvalidRequest
from corral.http.errors import error_middleware, error_response
from corral.http.limits import SINGLE_HEADERS

SERVER = "corral"


@web.middleware
async def single_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A header that must be single (Authorization, X-API-Key, Host...) given twice is a 400, as
    on the edge: two servers must never read one request two ways."""
    for name in SINGLE_HEADERS:
        if len(request.headers.getall(name, ())) > 1:
            return error_response(
                InvalidRequest(f"The request has more than one {name} header; send it once.",
                               code="duplicate_header")
            )  # fmt: skip
    if not request.path.startswith("/"):  # e.g. the asterisk form of OPTIONS *
        return error_response(InvalidRequest("No resource here has that form.", code="bad_request"))
    return await handler(request)


def control_middlewares() -> list[Middleware]:
    return [single_headers, error_middleware]


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """No ``Server: Python/x aiohttp/y``: versions only help an attacker pick an exploit."""
    response.headers["Server"] = SERVER
