"""core/hedge.race on its own: who wins, what is cancelled, what is discarded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from corral.core.hedge import race


class Retry(Exception):
    pass


class Attempts:
    """Attempts that answer after a set delay (or fail), noting which were cancelled."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.discarded: list[str] = []
        self.started: list[str] = []
        self.second: asyncio.Event | None = None  # set when a second attempt started

    async def run(self, name: str, seconds: float, fail: type[Exception] | None = None) -> str:
        self.started.append(name)
        if len(self.started) == 2 and self.second is not None:
            self.second.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        if fail is not None:
            raise fail(name)
        return name

    def backup(self, name: str, seconds: float, fail: type[Exception] | None = None):  # type: ignore[no-untyped-def]
        async def take():  # type: ignore[no-untyped-def]  # a slot taken, maybe after a round trip
            await asyncio.sleep(0)
            return name, self.run(name, seconds, fail)

        return take

    async def discard(self, value: str) -> None:
        self.discarded.append(value)


def go(first: tuple[str, Awaitable[str]], delay: float, backup, a: Attempts):  # type: ignore[no-untyped-def]
    return asyncio.run(race(first, delay, backup, retryable=Retry, discard=a.discard))


def test_the_first_answering_in_time_never_starts_the_backup() -> None:
    a = Attempts()
    won = go(("a", a.run("a", 0.0)), 1.0, a.backup("b", 0.0), a)
    assert (won.value, won.winner, won.cancelled, a.started) == ("a", "a", None, ["a"])


def test_a_slow_first_loses_to_the_backup_and_is_cancelled() -> None:
    a = Attempts()
    won = go(("a", a.run("a", 10.0)), 0.01, a.backup("b", 0.0), a)
    assert (won.value, won.winner, won.cancelled) == ("b", "b", "a")
    assert a.cancelled == ["a"] and a.started == ["a", "b"]


def test_a_declined_backup_leaves_the_first_running() -> None:
    a = Attempts()

    async def declined() -> None:
        return None

    won = go(("a", a.run("a", 0.05)), 0.01, declined, a)
    assert (won.value, won.cancelled) == ("a", None)


def test_a_failing_backup_does_not_end_the_race_while_the_first_runs() -> None:
    a = Attempts()
    won = go(("a", a.run("a", 0.05)), 0.01, a.backup("b", 0.0, Retry), a)
    assert (won.value, won.winner, won.cancelled) == ("a", "a", None)


def test_when_both_fail_the_last_failure_is_raised() -> None:
    a = Attempts()
    with pytest.raises(Retry, match="a"):
        go(("a", a.run("a", 0.05, Retry)), 0.01, a.backup("b", 0.0, Retry), a)


def test_a_failure_that_is_not_retryable_ends_the_race_and_stops_the_other() -> None:
    a = Attempts()
    with pytest.raises(ValueError, match="b"):
        go(("a", a.run("a", 10.0)), 0.01, a.backup("b", 0.0, ValueError), a)
    assert a.cancelled == ["a"]


def test_the_caller_cancelled_stops_every_attempt() -> None:
    a = Attempts()

    async def main() -> None:
        a.second = asyncio.Event()
        task = asyncio.ensure_future(
            race(("a", a.run("a", 10.0)), 0.01, a.backup("b", 10.0), retryable=Retry, discard=a.discard)
        )
        await asyncio.wait_for(a.second.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(a.cancelled) == ["a", "b"]
