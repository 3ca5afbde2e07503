"""Writing a ``Reply`` to the client: a JSON body, or a stream relayed chunk by chunk."""

from __future__ import annotations

import contextlib
import time

from aiohttp import web

from corral.core.call import Reply
from corral.http.request_ids import id_headers

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def write_reply(
    request: web.Request, reply: Reply, request_id: str, client_request_id: str | None = None
) -> web.StreamResponse:
    headers = reply.headers
    headers.update(id_headers(request_id, client_request_id))
    if reply.chunks is None:
        return web.Response(
            status=reply.status, body=reply.body, content_type=reply.content_type, headers=headers
        )
    headers.update(STREAM_HEADERS)
    headers["Content-Type"] = reply.content_type
    response = web.StreamResponse(status=reply.status, headers=headers)
    chunks = reply.chunks
    try:
        await response.prepare(request)
        first = True
        async for chunk in chunks:
            last = reply.outcome.ended
            if last:  # the chunk and the end marker go out in one write
                await response.write_eof(chunk)
            else:
                await response.write(chunk)
            if first:
                reply.outcome.first_byte_at = time.monotonic()
                first = False
            if last:
                break
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away; closing the iterator below releases the upstream
    finally:
        with contextlib.suppress(Exception):
            await chunks.aclose()  # type: ignore[attr-defined]
    return response
