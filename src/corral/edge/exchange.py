"""A data-plane request received by the edge, and the writing of its answer.

A whole answer is one write (head and body; the head alone for HEAD). A stream is chunked: the
head goes with the first chunk, and the last chunk (``Outcome.ended``) with the end marker, so a
burst that arrives at once leaves in one write. To an HTTP/1.0 client a stream is sent as it
comes and ended by closing the connection (1.0 has no chunked framing). Every write waits while
the client's socket buffer is full, for at most the server's send timeout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from corral.core.call import Reply
from corral.edge import wire
from corral.http.exchange import Exchange
from corral.http.replies import STREAM_HEADERS, answer_headers

if TYPE_CHECKING:
    from corral.edge.protocol import EdgeProtocol


class EdgeExchange(Exchange):
    __slots__ = ("_proto", "body_bytes", "http10", "keep_alive", "started")

    def __init__(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        proto: EdgeProtocol,
        keep_alive: bool,
        method: str = "POST",
        query: str = "",
        rest: str = "",
    ) -> None:
        super().__init__(path, headers, method=method, query=query, rest=rest)
        self.body_bytes = body
        self._proto = proto
        self.keep_alive = keep_alive
        self.http10 = False
        self.started = False  # the head went out: an error now can only close the connection

    async def body(self, limit: int) -> bytes:
        return self.body_bytes  # the protocol refused anything over the server's limit already

    def answer(
        self, status: int, body: bytes, headers: dict[str, str], content_type: str = "application/json"
    ) -> None:
        """A whole answer in one write (errors use this too)."""
        keep = self.keep_alive and not self._proto.closing
        data = wire.head(status, content_type, headers, self._proto.date(), len(body), keep, self.http10)
        if self.method != "HEAD":
            data += body
        self.started = True
        try:
            self._proto.send(data)
        except ConnectionError:
            self.keep_alive = False  # the client left before its answer

    async def write(self, reply: Reply) -> None:
        headers = answer_headers(reply, self.request_id, self.client_request_id)
        if reply.chunks is None:
            self.answer(reply.status, reply.body or b"", headers, reply.content_type)
            with contextlib.suppress(ConnectionError):
                await self._proto.drain()
            return
        proto = self._proto
        if self.http10:
            self.keep_alive = False  # the end of the stream is the end of the connection
        keep = self.keep_alive and not proto.closing
        headers.update(STREAM_HEADERS)
        length = 0 if self.method == "HEAD" else None
        pending = wire.head(
            reply.status, reply.content_type, headers, proto.date(), length, keep, self.http10
        )
        chunks = reply.chunks
        outcome = reply.outcome
        framed = not self.http10
        try:
            if self.method == "HEAD":
                self.started = True
                proto.send(pending)
                return
            async for data in chunks:
                last = outcome.ended
                body = (wire.chunk(data) if framed else data) if data else b""
                out = pending + body
                pending = b""
                if last and framed:
                    out += wire.LAST_CHUNK
                if out:
                    self.started = True
                    proto.send(out)
                    if outcome.first_byte_at is None:
                        outcome.first_byte_at = time.monotonic()
                    await proto.drain()
                if last:
                    break
            else:
                self.started = True
                proto.send(pending + wire.LAST_CHUNK if framed else pending)
        except ConnectionError:
            self.keep_alive = False  # the client went away; closing the iterator releases the upstream
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
