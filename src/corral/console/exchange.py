"""``Exchange`` over an aiohttp request: how the control plane runs a handler written for the
data plane (the playground's chat, the fleet's model pulls) without a second copy of it.

The caller is authenticated by the control plane (key or console session) before the
exchange is made. ``write`` answers a whole reply at once, or relays a stream chunk by chunk,
with the same headers the edge sends (ids, ``x-corral-*``, no caching). A ``Report`` sees the
reply when it is complete: before a whole reply is sent (it may add headers) and after a
stream's last chunk (the bytes it returns are sent before the end). A ``Relay`` sees a
stream's chunks on their way out and may change them (the playground drops the upstream's own
SSE event lines). ``answer()`` is what the aiohttp handler returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from corral.core.call import Reply
from corral.http.bodies import read_body
from corral.http.exchange import Exchange, too_large
from corral.http.replies import STREAM_HEADERS, answer_headers
from corral.http.request_ids import CLIENT_REQUEST_ID, REQUEST_ID
from corral.keys.principal import Principal

Report = Callable[[Reply], bytes]
Relay = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


class ControlExchange(Exchange):
    __slots__ = ("_request", "relay", "report", "response")

    def __init__(
        self,
        request: web.Request,
        principal: Principal,
        report: Report | None = None,
        relay: Relay | None = None,
    ) -> None:
        super().__init__(
            request.path, request.headers, method=request.method,
            query=request.query_string, principal=principal,
        )  # fmt: skip
        self._request = request
        request[REQUEST_ID] = self.request_id  # the error middleware's envelope carries the ids
        if self.client_request_id is not None:
            request[CLIENT_REQUEST_ID] = self.client_request_id
        self.report = report
        self.relay = relay
        self.response: web.StreamResponse | None = None

    async def body(self, limit: int) -> bytes:
        length = self._request.content_length
        if length is not None and length > limit:
            raise too_large(limit, length)  # the data plane's words: the limit is max_request_bytes
        return await read_body(self._request, limit)

    async def write(self, reply: Reply) -> None:
        if reply.chunks is None and self.report is not None:
            self.report(reply)  # may add headers to the reply
        headers = answer_headers(reply, self.request_id, self.client_request_id)
        if reply.chunks is None:
            self.response = web.Response(
                status=reply.status, body=reply.body, content_type=reply.content_type, headers=headers
            )
            return
        headers.update(STREAM_HEADERS)
        headers["Content-Type"] = reply.content_type
        response = self.response = web.StreamResponse(status=reply.status, headers=headers)
        chunks = reply.chunks
        relayed = self.relay(chunks) if self.relay is not None else chunks
        try:
            await response.prepare(self._request)
            async for chunk in relayed:
                if chunk:
                    await response.write(chunk)
                    if reply.outcome.first_byte_at is None:
                        reply.outcome.first_byte_at = time.monotonic()
                if reply.outcome.ended:
                    break
            if self.report is not None:
                await response.write(self.report(reply))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; closing the iterator below releases the upstream
        finally:
            for stream in (relayed, chunks) if relayed is not chunks else (chunks,):
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]

    def answer(self) -> web.StreamResponse:
        if self.response is None:  # a handler that returned without writing is a bug
            raise RuntimeError(f"no answer was written for {self.path}")
        return self.response
