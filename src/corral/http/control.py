"""Guards of the control-plane listener (aiohttp): the same head rules the edge applies on the
data plane, only its own host names in ``Host`` (DNS rebinding: a web page whose name an
attacker points at 127.0.0.1 reaches loopback ports, but says its own name), request bodies in
the shared budget (``corral.http.bodies``), wrong keys slowed down (``corral.http.guesses``),
answers that do not name the server's software or version, and requests that are not HTTP, or
whose client left, answered (or dropped) in at most one log line instead of a traceback.

The names answered: any IP address (a rebound page never has one for its name), ``localhost``
and names under ``.localhost`` (browsers resolve them to loopback themselves), the name the
listener is bound to (``admin.host``), and ``admin.allowed_hosts``; anything else is a 421."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web, web_protocol
from aiohttp.typedefs import Handler, Middleware

from corral.errors import InvalidRequest, MisdirectedRequest
from corral.http.bodies import release_bodies
from corral.http.errors import envelope, error_middleware, error_response
from corral.http.guesses import throttle_guesses
from corral.http.limits import MAX_HEAD, MAX_HEADERS, SINGLE_HEADERS

SERVER = "corral"
# aiohttp's request handler arguments: the head limits the edge applies too
HANDLER_ARGS: dict[str, Any] = {
    "max_field_size": MAX_HEAD,
    "max_line_size": MAX_HEAD,
    "max_headers": MAX_HEADERS,
}
log = logging.getLogger("corral.control")


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


def host_name(host: str) -> str | None:
    """The name in a ``Host`` value (no port, no brackets, lower case, no final dot); None when
    it is not one."""
    try:
        name = urlsplit("//" + host).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def answers_for(name: str, allowed: frozenset[str]) -> bool:
    if name in allowed or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def known_hosts(names: Iterable[str]) -> Middleware:
    """Refuse (421) a request whose ``Host`` names another server than this one."""
    allowed = frozenset(n for n in (host_name(name) for name in names) if n)

    @web.middleware
    async def known_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        name = host_name(host) if host is not None else ""  # no Host (HTTP/1.0): not a browser's
        if name is None or (name and not answers_for(name, allowed)):
            return error_response(
                MisdirectedRequest(
                    f"This is corral's control plane, which does not answer for the host name "
                    f"'{(host or '')[:100]}'. Use its address (e.g. http://127.0.0.1:<admin.port>), or add "
                    "the name to admin.allowed_hosts in the config.",
                    code="unknown_host",
                )
            )
        return await handler(request)

    return known_host


def control_middlewares(names: Iterable[str] = ()) -> list[Middleware]:
    """Checks run before every control-plane handler; ``names``: the host names it answers for
    besides IP addresses and localhost (``admin.host``, ``admin.allowed_hosts``)."""
    return [release_bodies, single_headers, known_hosts(names), throttle_guesses, error_middleware]


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """No ``Server: Python/x aiohttp/y``: versions only help an attacker pick an exploit."""
    response.headers["Server"] = SERVER


class ControlHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses the way corral answers
    errors (a JSON envelope, ``Server: corral``) and logging it as a line, not a traceback: a
    malformed request is the client's mistake (or a scan), not corral's."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):  # the client left, or a broken-off answer ended it
            raise ConnectionResetError("the connection is closed; there is no one to answer") from exc
        if status >= 500:
            response = super().handle_error(request, status, exc, message)
        else:
            log.info("refused a malformed request from %s: HTTP %d", request.remote, status)
            if request.writer.output_size > 0:
                raise ConnectionError("an answer was already under way; closing the connection")
            reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Bad Request"
            response = web.Response(
                status=status,
                body=envelope(f"The request is not valid HTTP/1.1 ({reason}).", "invalid_request_error",
                              code="bad_request"),
                content_type="application/json",
            )  # fmt: skip
            response.force_close()
        response.headers["Server"] = SERVER
        return response
