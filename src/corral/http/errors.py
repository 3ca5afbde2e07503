"""The single boundary where corral errors become error envelopes: each surface's own shape
(OpenAI's ``{"error": {"message", "type", "param", "code"}}``, Ollama's ``{"error": "..."}``),
chosen by the surface in ``error_parts`` and nowhere else."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from corral.conversation.call import Surface
from corral.errors import CorralError, UpstreamRejected
from corral.http.request_ids import CLIENT_REQUEST_ID, REQUEST_ID, id_headers
from corral.http.routes import surface_of_path

log = logging.getLogger("corral.http")


def envelope(message: str, error_type: str, *, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def ollama_envelope(message: str) -> bytes:
    """Ollama's error body: {"error": "..."}."""
    return orjson.dumps({"error": message})


# status -> Anthropic's error type; 503 (busy, corral's limits or the upstream) is Anthropic's
# 529 overloaded_error, which its clients retry
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}  # fmt: skip


def anthropic_error(status: int) -> tuple[int, str]:
    if status == 503:
        return 529, "overloaded_error"
    if status in _ANTHROPIC_TYPES:
        return status, _ANTHROPIC_TYPES[status]
    return status, "invalid_request_error" if status < 500 else "api_error"


def anthropic_envelope(message: str, error_type: str) -> bytes:
    """Anthropic's error body: {"type": "error", "error": {"type", "message"}}."""
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def error_parts(
    exc: CorralError,
    request_id: str | None = None,
    *,
    surface: Surface = Surface.OPENAI,
    client_request_id: str | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and headers of the answer to ``exc`` in ``surface``'s envelope (either
    server writes them)."""
    headers = id_headers(request_id, client_request_id) if request_id else {}
    extra = getattr(exc, "headers", None)  # e.g. Retry-After on a 429 from the limits
    if isinstance(extra, dict) and extra:
        headers.update(extra)
    if surface is Surface.OLLAMA:
        return exc.http_status, ollama_envelope(exc.message), headers
    if surface is Surface.MESSAGES:
        status, kind = anthropic_error(exc.http_status)
        return status, anthropic_envelope(exc.message, kind), headers
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="corral"'
    error_type = exc.type_for_status if isinstance(exc, UpstreamRejected) else exc.error_type
    return exc.http_status, envelope(exc.message, error_type, code=exc.code, param=exc.param), headers


def error_response(
    exc: CorralError,
    request_id: str | None = None,
    *,
    surface: Surface = Surface.OPENAI,
    client_request_id: str | None = None,
) -> web.Response:
    status, body, headers = error_parts(exc, request_id, surface=surface, client_request_id=client_request_id)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def internal_error(request_id: str | None) -> bytes:
    return envelope(
        "corral hit an internal error; it has been logged"
        + (f" under request id {request_id}." if request_id else "."),
        "server_error",
        code="internal_error",
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except Exception as exc:
            if request.writer.output_size == 0:
                raise  # nothing sent yet: answered below
            # the head (and maybe part of a stream) is out: a second answer would be written inside
            # the first, so the connection ends here, and the client sees a cut answer
            log.error(
                "error after the answer to %s %s began (request %s); closing the connection: %s",
                request.method, request.path, request.get(REQUEST_ID) or "-", exc,
                exc_info=not isinstance(exc, CorralError),
            )  # fmt: skip
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the answer broke off; the connection was closed") from exc
    except ConnectionError:
        raise  # the connection is gone (the client left, or it was ended above): nothing to answer
    except CorralError as exc:
        return error_response(
            exc,
            request.get(REQUEST_ID),
            surface=surface_of_path(request.path),
            client_request_id=request.get(CLIENT_REQUEST_ID),
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = "not_found" if exc.status == 404 else "method_not_allowed" if exc.status == 405 else None
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        where = (
            "the admin API is documented at GET /admin/openapi.json"
            if request.path.startswith("/admin")
            else "the OpenAI API is under /v1 (e.g. POST /v1/chat/completions)"
        )
        message = (
            f"No route for {request.method} {request.path}; {where}."
            if exc.status in (404, 405)
            else exc.reason
        )
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        if surface_of_path(request.path) is Surface.OLLAMA:
            body = ollama_envelope(f"{exc.reason}: {request.method} {request.path}")
        else:
            body = envelope(message, kind, code=code)
        return web.Response(status=exc.status, body=body, content_type="application/json", headers=headers)
    except Exception:
        rid = request.get(REQUEST_ID)
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, rid or "-")
        return web.Response(
            status=500,
            content_type="application/json",
            body=internal_error(rid),
            headers=id_headers(rid, request.get(CLIENT_REQUEST_ID)) if rid else None,
        )
