"""Hedging: when the first attempt sent no first token in time, race a second one.

``race`` runs the first attempt; if it has not answered (a stream: its first token; a whole
answer: the answer) within ``delay`` s it asks ``backup`` for a second attempt on the next
candidate (which may decline: no free slot, or the retry budget is spent; it may take a round
trip to take a slot counted across the fleet, while the first attempt runs on) and keeps
whichever answers first. The other is cancelled at once: cancelling an attempt closes its upstream
connection, so Ollama stops generating, and frees its slot. An attempt that fails does not end
the race while the other still runs. As Envoy's hedge on per-try timeout: the first good
answer wins, errors of the loser are dropped, the same deployment is never raced with itself.

When the attempts are made the caller decides; what the race reports back is who won and
which attempt it cancelled (to be counted as an attempt, never billed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")  # what an attempt answers
K = TypeVar("K")  # what names an attempt (its target)


@dataclass(slots=True)
class Outcome(Generic[T, K]):
    value: T
    winner: K
    cancelled: K | None  # the attempt that lost the race and was stopped, if one ran


async def race(
    first: tuple[K, Awaitable[T]],
    delay: float,
    backup: Callable[[], Awaitable[tuple[K, Awaitable[T]] | None]],
    *,
    retryable: type[Exception],
    discard: Callable[[T], Awaitable[None]],
) -> Outcome[T, K]:
    """The first attempt's answer, or the backup's if it answers first. A failure that is not
    ``retryable`` ends the race at once (a bad request fails everywhere); when every attempt
    that ran failed, the last failure is raised (each was already recorded by its attempt).
    An answer that arrives after the race was decided is ``discard``-ed (closed, slot freed)."""
    key, coro = first
    running: dict[asyncio.Task[T], K] = {asyncio.ensure_future(coro): key}
    try:
        done, _ = await asyncio.wait(running, timeout=delay)
        if not done:
            second = await backup()
            if second is not None:
                running[asyncio.ensure_future(second[1])] = second[0]
        failure: BaseException | None = None
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                name = running.pop(task)
                error = task.exception()
                if error is None:
                    loser = await _cancel_all(running, discard)
                    return Outcome(task.result(), name, loser)
                if not isinstance(error, retryable):
                    raise error
                failure = error
        assert failure is not None
        raise failure
    finally:
        await _cancel_all(running, discard)  # the caller was cancelled (the client left): stop both


async def _cancel_all(running: dict[asyncio.Task[T], K], discard: Callable[[T], Awaitable[None]]) -> K | None:
    """Cancel what still runs and wait until it stopped (its clean-up ran); the last one's key."""
    last: K | None = None
    for task, name in list(running.items()):
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if task.done() and not task.cancelled() and task.exception() is None:
            await discard(task.result())  # it answered just before it could be stopped
        last = name
    running.clear()
    return last
