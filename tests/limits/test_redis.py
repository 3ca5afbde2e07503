"""What only the Redis limiter does: one limit shared by several gateways, keys that expire,
fail-open (or closed) when Redis is unreachable, and a cancelled admit giving its slot back."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from corral.limits import (
    InProcessLimiter,
    Limits,
    LimitsUnavailable,
    RateLimited,
    make_limiter,
)
from corral.limits.redis_limiter import RedisLimiter
from tests.limits.conftest import Clock

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


@pytest.mark.redis
async def test_two_gateways_share_one_limit(redis_prefix: tuple[str, str], clock: Clock) -> None:
    # one clock for both, so no run straddles a minute boundary
    first, second = RedisLimiter(*redis_prefix, clock=clock), RedisLimiter(*redis_prefix, clock=clock)
    try:
        limits = Limits(rpm=10)
        for i in range(10):
            await (first if i % 2 else second).admit("key:shared", limits, estimated_tokens=0)
        for limiter in (first, second):
            with pytest.raises(RateLimited) as info:
                await limiter.admit("key:shared", limits, estimated_tokens=0)
            assert info.value.limit == "rpm" and 60 <= info.value.retry_after <= 61
        parallel = Limits(max_parallel=2)
        a = await first.admit("key:p", parallel, estimated_tokens=0)
        await second.admit("key:p", parallel, estimated_tokens=0)
        with pytest.raises(RateLimited):
            await first.admit("key:p", parallel, estimated_tokens=0)
        await a.done(tokens=0, cost=0)
        await second.admit("key:p", parallel, estimated_tokens=0)
    finally:
        await first.close()
        await second.close()


@pytest.mark.redis
async def test_every_key_is_under_the_prefix_and_expires(
    redis_prefix: tuple[str, str], redis_client: aioredis.Redis
) -> None:
    url, prefix = redis_prefix
    limiter = RedisLimiter(url, prefix, clock=Clock())
    try:
        limits = Limits(rpm=100, tpm=10_000, max_parallel=5, max_budget=10.0, budget_period="1d")
        lease = await limiter.admit_many([("key:a", limits), ("user:u", limits)], estimated_tokens=10)
        await lease.done(tokens=20, cost=0.25)
        keys = sorted([k.decode() async for k in redis_client.scan_iter(match=f"{prefix}:*")])
        assert keys, "the limiter wrote nothing"
        for key in keys:
            ttl = await redis_client.ttl(key)
            assert 0 < ttl <= 86400 + 60, (key, ttl)
        assert any(k.startswith(f"{prefix}:user:u:spend:1d:") for k in keys)
        spend = [k for k in keys if ":spend:" in k]
        assert [float(await redis_client.get(k) or 0) for k in spend] == [0.25, 0.25]
        assert await redis_client.zcard(f"{prefix}:key:a:par") == 0
    finally:
        await limiter.close()


@pytest.mark.redis
async def test_a_cancelled_admit_gives_its_slot_back(redis_prefix: tuple[str, str]) -> None:
    limiter = RedisLimiter(*redis_prefix)
    real = limiter._admit_script
    ran = asyncio.Event()

    async def slow(**kwargs: Any) -> Any:  # the script runs, then the answer never arrives
        await real(**kwargs)
        ran.set()
        await asyncio.sleep(3600)

    limiter._admit_script = slow  # type: ignore[assignment]
    limits = Limits(max_parallel=1)
    task = asyncio.create_task(limiter.admit("key:c", limits, estimated_tokens=0))
    await ran.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    limiter._admit_script = real
    await asyncio.sleep(0.05)  # the release runs in the background
    lease = await limiter.admit("key:c", limits, estimated_tokens=0)
    await lease.done(tokens=0, cost=0)
    await limiter.close()


async def test_unreachable_redis_fails_open_logs_once_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter(UNREACHABLE, "corral-test", retry_interval=60.0)
    try:
        with caplog.at_level(logging.WARNING, logger="corral.limits"):
            for _ in range(5):
                lease = await limiter.admit("key:k", Limits(rpm=1), estimated_tokens=0)
                await lease.done(tokens=1, cost=1.0)
        assert limiter.stats.fail_open == 5
        assert limiter.stats.errors == 1  # the other four did not even try, for retry_interval
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "NOT enforced (fail-open)" in warnings[0]
    finally:
        await limiter.close()


async def test_unreachable_redis_can_fail_closed() -> None:
    limiter = make_limiter(UNREACHABLE, "corral-test", fail_open=False)
    try:
        with pytest.raises(LimitsUnavailable) as info:
            await limiter.admit("key:k", Limits(rpm=1), estimated_tokens=0)
        assert info.value.status == 503 and "redis_url" in info.value.message
        # a key without limits never needs Redis
        await limiter.admit("key:k", Limits(), estimated_tokens=0)
    finally:
        await limiter.close()


@pytest.mark.redis
async def test_recovery_is_logged(redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter(*redis_prefix, retry_interval=0.0)
    real = limiter._admit_script

    async def broken(**kwargs: Any) -> Any:
        raise RedisConnectionError("connection refused")

    limiter._admit_script = broken  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="corral.limits"):
        await limiter.admit("key:r", Limits(rpm=5), estimated_tokens=0)
        await limiter.admit("key:r", Limits(rpm=5), estimated_tokens=0)
        limiter._admit_script = real
        await limiter.admit("key:r", Limits(rpm=5), estimated_tokens=0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "is back after" in messages[1] and "2 admits" in messages[1]
    await limiter.close()


async def test_make_limiter_picks_the_backend() -> None:
    local = make_limiter(None, "p")
    shared = make_limiter("redis://127.0.0.1:6379/0", "p")  # no I/O until the first admit
    assert isinstance(local, InProcessLimiter) and isinstance(shared, RedisLimiter)
    await local.close()
    await shared.close()


@pytest.mark.redis
async def test_redis_admit_costs_one_round_trip(redis_prefix: tuple[str, str]) -> None:
    limiter = RedisLimiter(*redis_prefix)
    limits = Limits(rpm=10**6, tpm=10**9, max_parallel=10**6, max_budget=10**6)
    try:
        lease = await limiter.admit("key:t", limits, estimated_tokens=10)  # connect, load scripts
        await lease.done(tokens=10, cost=0.0)
        commands: list[object] = []
        execute = limiter._redis.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            commands.append(args[0])
            return await execute(*args, **kwargs)

        limiter._redis.execute_command = counting  # type: ignore[method-assign]
        lease = await limiter.admit_many([("key:t", limits), ("user:t", limits)], estimated_tokens=10)
        assert commands == ["EVALSHA"]
        await lease.done(tokens=10, cost=0.0)
        assert commands == ["EVALSHA", "EVALSHA"]
        limiter._redis.execute_command = execute  # type: ignore[method-assign]
        n = 500
        start = time.perf_counter()
        for _ in range(n):
            lease = await limiter.admit("key:t", limits, estimated_tokens=10)
        admit = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for _ in range(n):
            await lease.done(tokens=10, cost=0.001)
            lease = await limiter.admit("key:t", Limits(rpm=10**6), estimated_tokens=0)
        print(f"\nRedis admit (all four limits): {admit * 1e6:.0f} µs per call")
    finally:
        await limiter.close()


@pytest.mark.redis
async def test_a_burst_beyond_the_connection_pool_is_limited_not_waved_through(
    redis_prefix: tuple[str, str], clock: Clock
) -> None:
    # 400 admits at once, more than the client's connection pool: each must reach Redis (queued
    # in order), none may be let through as if Redis were down
    limiter = RedisLimiter(*redis_prefix, clock=clock)
    try:
        limits = Limits(rpm=150)

        async def one() -> bool:
            try:
                await limiter.admit("key:burst", limits, estimated_tokens=0)
            except RateLimited:
                return False
            return True

        admitted = await asyncio.gather(*(one() for _ in range(400)))
        assert sum(admitted) == 150
        assert limiter.stats.fail_open == 0 and limiter.stats.errors == 0
    finally:
        await limiter.close()
