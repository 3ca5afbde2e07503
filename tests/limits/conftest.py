"""Fixtures for the limiter tests: a clock the tests move, and limiters on both backends.

Redis and each test's own key prefix come from ``tests.support.rediskeys.redis_prefix``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from corral.limits import InProcessLimiter, Limiter
from corral.limits.redis_limiter import RedisLimiter
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture

T0 = 1_700_000_040.0  # Tuesday 2023-11-14 22:14:00 UTC: the start of a minute


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def redis_client(redis_prefix: tuple[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_prefix[0])
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """None for the in-process limiter, or (url, prefix) of Redis."""
    if request.param == "redis":
        target: tuple[str, str] = request.getfixturevalue("redis_prefix")
        return target
    return None


MakeLimiter = Callable[..., Limiter]


@pytest.fixture
async def make_limiter(backend: tuple[str, str] | None, clock: Clock) -> AsyncIterator[MakeLimiter]:
    """A factory of limiters on one backend; limiters of one test share state (same Redis prefix)."""
    made: list[Limiter] = []
    target = backend

    def make(**kwargs: Any) -> Limiter:
        kwargs.setdefault("clock", clock)
        limiter: Limiter = InProcessLimiter(**kwargs) if target is None else RedisLimiter(*target, **kwargs)
        made.append(limiter)
        return limiter

    try:
        yield make
    finally:
        for limiter in made:
            await limiter.close()
