"""Keeping a ``/v1/messages`` stream alive while its upstream is slow to start.

Anthropic's API sends ``event: ping`` now and then; Claude Code and the SDKs skip them, and they
keep the connection (and any proxy in between) from timing out while a model loads or reads a
long prompt. ``Pinger.answer`` waits for the engine's reply up to one interval: a reply in time
goes out as it is (head, ``x-corral-*`` headers and all). Past that the stream is committed: its
head and a ``ping`` go out, one more ping each interval, timed by the event loop, until the reply
arrives; then the reply's chunks follow, its outcome copied on as they go, so the edge and the
accounting see it as their own. The engine keeps failing over meanwhile (nothing but pings has
reached the client); when it gives up, its error becomes the API's in-band ``error`` event, and
the record keeps the error's status. A pinged stream's head was sent before anyone answered, so
it has no ``x-corral-model``: the usage record and metrics still name the served model.

The OpenAI Responses API defines no keep-alive event, so its streams get none.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from corral.core.call import Outcome, Reply
from corral.core.streams import Relay
from corral.errors import CorralError

PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MIN_INTERVAL = 0.01  # seconds: the bounds of server.ping_interval
MAX_INTERVAL = 60.0


class Pinger:
    """Pings every ``interval`` seconds until the reply comes; ``error_event`` writes an engine
    error that comes instead, in the surface's in-band form."""

    __slots__ = ("_closing", "error_event", "interval")

    def __init__(self, interval: float, error_event: Callable[[CorralError], bytes]) -> None:
        self.interval = interval
        self.error_event = error_event
        self._closing: set[asyncio.Task[None]] = set()  # clean-ups of abandoned replies, running

    async def answer(self, pending: Awaitable[Reply]) -> Reply:
        task = asyncio.ensure_future(pending)
        try:
            done = await _within(task, self.interval)
        except BaseException:  # cancelled: the client left, the engine's work goes too
            self._discard(task)
            raise
        if done:
            return task.result()  # in time (or failed in time): answered as ever
        reply = Reply(content_type="text/event-stream")
        reply.chunks = Relay(self._stream(task, reply), on_close=lambda: self._discard(task))
        return reply

    async def _stream(self, task: asyncio.Future[Reply], outer: Reply) -> AsyncIterator[bytes]:
        chunks: AsyncIterator[bytes] | None = None
        try:
            while True:
                yield PING
                if await _within(task, self.interval):
                    break
            try:
                inner = task.result()
            except CorralError as exc:
                outer.status = exc.http_status  # for the record: the client's head said 200
                outer.outcome.error = exc.message
                outer.outcome.ended = True
                yield self.error_event(exc)
                return
            outer.served = inner.served
            outer.outcome.first_byte_at = None  # the answer's first byte is still to go
            if inner.chunks is None:  # a whole answer to a stream (an upstream's own choice)
                _copy(inner.outcome, outer.outcome)
                outer.outcome.ended = True
                yield inner.body or b""
                return
            chunks = inner.chunks
            async for chunk in chunks:
                _copy(inner.outcome, outer.outcome)
                yield chunk
            _copy(inner.outcome, outer.outcome)
        finally:
            if chunks is not None:
                close = getattr(chunks, "aclose", None)
                if close is not None:
                    await close()

    def _discard(self, task: asyncio.Future[Reply]) -> None:
        """The reply is not wanted (the client left, or the stream was closed): stop the
        engine's work, or close a reply that came anyway so its deployment slot is freed."""
        task.cancel()

        def close(done: asyncio.Future[Reply]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            chunks = done.result().chunks
            close = getattr(chunks, "aclose", None)
            if close is not None:
                cleanup = asyncio.ensure_future(close())
                self._closing.add(cleanup)
                cleanup.add_done_callback(self._closing.discard)

        task.add_done_callback(close)


async def _within(task: asyncio.Future[Reply], seconds: float) -> bool:
    """Wait for ``task`` at most ``seconds``: whether it is done. (A timer and a done callback on
    one future: a third of what ``asyncio.wait`` costs, on every Messages stream.)"""
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


def _copy(inner: Outcome, outer: Outcome) -> None:
    outer.error = inner.error
    outer.usage = inner.usage
    outer.pieces = inner.pieces
    outer.chars = inner.chars
    outer.ended = inner.ended
