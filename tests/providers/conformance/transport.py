"""An in-memory upstream for the provider conformance suite, in the spirit of httpx's
``MockTransport``: a provider gets a ``MemoryPool`` instead of its keep-alive pool, and a handler
decides, per request, exactly what the upstream does. No sockets, no timing: every piece of a
body is one read, in order, and a fault happens exactly where the script puts it.

A ``Script`` is the status, the headers and the body's pieces, then how the body ends: ``clean``
(complete), ``drop`` (the connection breaks: ``Disconnected``), or ``hang`` (nothing more comes:
the read times out after the pool's ``read_timeout``, as the real client's does). ``hang_before``
never answers at all (the engine's first-token deadline fires); ``drop_before`` breaks the
connection before any byte of the answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from corral.httpclient import Disconnected, ReadTimeout, TooLarge

End = Literal["clean", "drop", "hang"]


@dataclass
class Script:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    pieces: list[bytes] = field(default_factory=list)
    end: End = "clean"
    hang_before: bool = False
    drop_before: bool = False


@dataclass
class Seen:
    """One request the upstream received."""

    method: str
    path: str
    body: Any  # the JSON body, parsed (None without one)
    headers: bytes  # the extra header lines the provider sent with it


class FakeResponse:
    """What a provider reads: the real ``Response``'s interface over a ``Script``."""

    def __init__(self, script: Script, read_timeout: float | None, max_body: int | None) -> None:
        self.status = script.status
        self.headers = {k.lower(): v for k, v in script.headers.items()}
        self._pieces = deque(script.pieces)
        self._end = script.end
        self._read_timeout = read_timeout
        self._max_body = max_body
        self.released = False  # given back to be kept (read to its end, or drained)
        self.closed = False  # cut short: the connection is dropped (an upstream still generating stops)

    @property
    def complete(self) -> bool:
        return not self._pieces and self._end == "clean"

    async def _finish(self) -> None:
        if self._end == "drop":
            raise Disconnected("the upstream closed the connection mid-answer", before_response=False)
        if self._end == "hang":
            try:
                async with asyncio.timeout(self._read_timeout):
                    await asyncio.Event().wait()  # nothing more ever comes
            except TimeoutError:
                raise ReadTimeout(f"no data from the upstream for {self._read_timeout:g} s") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        while self._pieces:
            yield self._pieces.popleft()
        await self._finish()

    async def read(self, limit: int | None = None, *, max_bytes: int | None = None) -> bytes:
        cap = max_bytes if max_bytes is not None else self._max_body
        data = b"".join(self._pieces)
        self._pieces.clear()
        if limit is not None:
            return data[:limit]
        if cap is not None and len(data) > cap:
            self.closed = True
            raise TooLarge("an answer", cap)
        await self._finish()
        return data

    def release(self) -> None:
        if not self.closed:
            self.released = True

    async def settle(self, seconds: float = 0.0) -> None:
        """The reader is done: what is left of the body is dropped, the connection kept."""
        if self._end == "clean":
            self._pieces.clear()
        self.release()

    def close(self) -> None:
        if not self.released:
            self.closed = True


Handler = Callable[[Seen], Script]


class MemoryPool:
    """A provider's pool, answered by ``handler`` in memory. ``seen`` and ``answers`` keep every
    request and response, for the tests to look at."""

    def __init__(
        self, handler: Handler, *, read_timeout: float | None = 5.0, max_body: int | None = None
    ) -> None:
        self.handler = handler
        self.read_timeout = read_timeout
        self.max_body = max_body
        self.seen: list[Seen] = []
        self.answers: list[FakeResponse] = []
        self.in_use = 0

    async def request(
        self, method: str, path: str, body: bytes | None = None, extra_headers: bytes = b""
    ) -> FakeResponse:
        seen = Seen(method, path, orjson.loads(body) if body else None, extra_headers)
        self.seen.append(seen)
        script = self.handler(seen)
        if script.hang_before:  # no answer: the engine's deadline, or the read timeout, ends this
            try:
                async with asyncio.timeout(self.read_timeout):
                    await asyncio.Event().wait()
            except TimeoutError:
                raise ReadTimeout(f"no answer from the upstream for {self.read_timeout:g} s") from None
        if script.drop_before:
            raise Disconnected("the upstream closed the connection before answering", before_response=True)
        resp = FakeResponse(script, self.read_timeout, self.max_body)
        self.answers.append(resp)
        return resp

    @asynccontextmanager
    async def _get(self, path: str) -> AsyncIterator[FakeResponse]:
        resp = await self.request("GET", path)
        try:
            yield resp
        finally:
            resp.release()

    def get(self, path: str) -> Any:
        return self._get(path)

    async def close(self) -> None:
        return None
