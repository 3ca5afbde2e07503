"""A stream wrapper whose clean-up always runs.

An async generator that is closed before its first iteration never runs its ``finally``
block, so a client that leaves before the first byte is written would leak the deployment
slot. ``Relay`` is a plain async iterator: closing it, exhausting it or failing in it all
run ``on_close`` exactly once.

A relay can also note when each chunk arrived (``report_to``): one store of the monotonic time
per chunk on the deployment's state, no task and no lock, so health checks can tell a stream
that moves from one that stalled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Protocol


class Progress(Protocol):
    """Where a relay notes the time of the latest chunk (a deployment's state)."""

    last_progress: float


class Relay:
    """Yields ``first`` (already read from ``inner``), then the rest of ``inner``."""

    __slots__ = ("_closed", "_first", "_inner", "_on_close", "_progress")

    def __init__(
        self,
        inner: AsyncIterator[bytes],
        first: bytes | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self._first = first
        self._on_close = on_close
        self._closed = False
        self._progress: Progress | None = None

    def report_to(self, progress: Progress) -> Relay:
        """Note on ``progress`` the time each chunk arrives from here on."""
        self._progress = progress
        progress.last_progress = monotonic()
        return self

    def then(self, on_close: Callable[[], None]) -> Relay:
        """Add a clean-up step, run after the ones already there."""
        before = self._on_close

        def both() -> None:
            try:
                if before is not None:
                    before()
            finally:
                on_close()

        self._on_close = both
        return self

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            chunk = await anext(self._inner)
        except BaseException:  # exhausted (StopAsyncIteration), failed, or cancelled
            await self.aclose()
            raise
        if self._progress is not None:
            self._progress.last_progress = monotonic()
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._inner, "aclose", None)
            if close is not None:
                await close()
        finally:
            if self._on_close is not None:
                self._on_close()
