"""Fixtures for the limiter tests: a clock the tests move, and limiters on both backends.

Redis comes from ``CORRAL_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0). Each test uses
its own random key prefix and deletes only keys under it. If Redis cannot be reached the Redis
tests are skipped with the reason, except when ``CI=true``: then they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from corral.limits import InProcessLimiter, Limiter
from corral.limits.redis_limiter import RedisLimiter

ENV_VAR = "CORRAL_TEST_REDIS_URL"
T0 = 1_700_000_040.0  # Tuesday 2023-11-14 22:14:00 UTC: the start of a minute


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def redis_url() -> str:
    return os.environ.get(ENV_VAR, "").strip() or "redis://127.0.0.1:6379/0"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix) of a reachable Redis; the prefix's keys are deleted afterwards."""
    url = redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        message = f"Redis not reachable at {url}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true, so Redis tests must run)", pytrace=False)
        pytest.skip(f"{message}; set {ENV_VAR} or start Redis to run these tests")
    prefix = f"corral-test-{secrets.token_hex(6)}"
    try:
        yield url, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


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
