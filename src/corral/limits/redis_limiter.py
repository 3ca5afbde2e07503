"""The Redis limiter: limits shared by every gateway replica that uses the same Redis and prefix.

Each admit is one Lua script (one round trip, atomic in Redis): it checks every limit of every
subject and only then takes from them, so a refusal takes nothing. ``done`` is one more script.
Keys, all under ``<prefix>:<subject>:`` and all with a TTL:

* ``rpm:<minute>`` / ``tpm:<minute>``: the sliding-minute counters (``windows``), kept until
  the end of the next minute;
* ``par``: a sorted set of open leases scored by their expiry. A lease that is never ``done()``
  (a crashed replica) stops counting after ``lease_ttl`` (10 min by default); a request that
  really runs longer stops counting then too;
* ``spend:<period>:<window>``: the spend of one budget window, kept until the window ends.

Time comes from this process's clock (UTC epoch seconds): replicas should run NTP; a skew of a
few ms only moves window edges by that much.

When Redis cannot be reached (or answers an error) the limiter **fails open** by default: the
request goes through unlimited, one warning is logged when the outage starts and one line when
it ends, and every such admit is counted in ``stats.fail_open`` (exported by ``Metrics`` as
``corral_limiter_fail_open_total``; alert on it). Availability wins because Redis is an
optional add-on here and an outage of it should not become an outage of every model; budgets
are still recorded by the usage store. After a failure Redis is left alone for
``retry_interval`` seconds, so an outage costs one timeout, not one per request. With
``fail_open=False`` the same admits raise ``LimitsUnavailable`` (503) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from corral.limits.base import Lease, LimiterStats, Limits, LimitsUnavailable, RateLimited
from corral.limits.windows import minute_of, wait_time

log = logging.getLogger("corral.limits")
LEASE_TTL = 600.0
MAX_CONNECTIONS = 64  # to Redis per limiter; more admits at once wait their turn
STORE_ERRORS = (RedisError, OSError, TimeoutError)

ADMIT = """
local weight, est = tonumber(ARGV[5]), tonumber(ARGV[3])
local function over(cur, prev, limit, need)
  if limit <= 0 then return true end
  if need > limit then need = limit end
  return math.floor(prev * weight) + cur + need > limit
end
local n = #KEYS / 6
for i = 0, n - 1 do
  local k, a = i * 6, 6 + i * 4
  local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local par, budget = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if rpm >= 0 then
    local cur = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
    local prev = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
    if over(cur, prev, rpm, 1) then return {i + 1, 'rpm', cur, prev} end
  end
  if tpm >= 0 then
    local cur = tonumber(redis.call('GET', KEYS[k + 3]) or '0')
    local prev = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
    if over(cur, prev, tpm, est) then return {i + 1, 'tpm', cur, prev} end
  end
  if par >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 5], '-inf', ARGV[1])
    local open = redis.call('ZCARD', KEYS[k + 5])
    if open >= par then return {i + 1, 'max_parallel', open, 0} end
  end
  if budget >= 0 then
    local spent = redis.call('GET', KEYS[k + 6]) or '0'
    if tonumber(spent) >= budget then return {i + 1, 'max_budget', spent, 0} end
  end
end
for i = 0, n - 1 do
  local k, a = i * 6, 6 + i * 4
  if tonumber(ARGV[a + 1]) >= 0 then
    redis.call('INCR', KEYS[k + 1])
    redis.call('EXPIRE', KEYS[k + 1], ARGV[6])
  end
  if tonumber(ARGV[a + 2]) >= 0 then
    redis.call('INCRBY', KEYS[k + 3], est)
    redis.call('EXPIRE', KEYS[k + 3], ARGV[6])
  end
  if tonumber(ARGV[a + 3]) >= 0 then
    redis.call('ZADD', KEYS[k + 5], tonumber(ARGV[1]) + tonumber(ARGV[4]), ARGV[2])
    redis.call('EXPIRE', KEYS[k + 5], math.ceil(tonumber(ARGV[4])) + 1)
  end
end
return {0}
"""

DONE = """
local delta, cost = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, 3 + i * 3
  if ARGV[a + 1] == '1' and delta ~= 0 and redis.call('EXISTS', KEYS[k + 1]) == 1 then
    if redis.call('INCRBY', KEYS[k + 1], delta) < 0 then redis.call('SET', KEYS[k + 1], 0, 'KEEPTTL') end
  end
  if ARGV[a + 2] == '1' then redis.call('ZREM', KEYS[k + 2], ARGV[1]) end
  if ARGV[a + 3] ~= '0' and cost > 0 then
    redis.call('INCRBYFLOAT', KEYS[k + 3], ARGV[3])
    redis.call('EXPIRE', KEYS[k + 3], ARGV[a + 3])
  end
end
return 0
"""

SEED = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 0
"""


def _flag(value: float | None) -> str:
    return "-1" if value is None else repr(value)


class RedisLimiter:
    """Limits shared through Redis at ``url``; every key starts with ``prefix``."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        fail_open: bool = True,
        timeout: float = 0.5,
        retry_interval: float = 1.0,
        lease_ttl: float = LEASE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis: Redis = Redis.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._prefix = prefix
        self._fail_open = fail_open
        self._retry_interval = retry_interval
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._admit_script = self._redis.register_script(ADMIT)
        self._done_script = self._redis.register_script(DONE)
        self._seed_script = self._redis.register_script(SEED)
        self._members = itertools.count(1)
        self._instance = secrets.token_hex(4)  # lease members stay unique across replicas
        self._down_since: float | None = None
        self._skip_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = LimiterStats()
        # commands in flight, at most the pool's size: a burst queues here in order instead of
        # finding the pool empty, which redis-py reports as an error (and fail-open would then
        # wave the burst through unlimited)
        self._in_flight = asyncio.Semaphore(MAX_CONNECTIONS)

    def _key(self, subject: str, *parts: object) -> str:
        return ":".join((self._prefix, subject, *map(str, parts)))

    async def admit(self, subject: str, limits: Limits, *, estimated_tokens: int) -> Lease:
        if limits.empty:
            return Lease()
        return await self._admit(((subject, limits),), estimated_tokens)

    async def admit_many(self, checks: Sequence[tuple[str, Limits]], *, estimated_tokens: int) -> Lease:
        active = tuple(c for c in checks if not c[1].empty)
        return await self._admit(active, estimated_tokens) if active else Lease()

    async def _admit(self, checks: tuple[tuple[str, Limits], ...], estimated: int) -> Lease:
        if time.monotonic() < self._skip_until:
            return self._unavailable(None)
        now = self._clock()
        minute, weight = minute_of(now)
        member = f"{self._instance}:{next(self._members)}"
        keys: list[str] = []
        args: list[Any] = [repr(now), member, estimated, repr(self._lease_ttl), repr(weight)]
        args.append(math.ceil((minute + 2) * 60 - now))
        for subject, limits in checks:
            budget_key = ""
            if limits.period is not None:
                budget_key = self._key(subject, "spend", limits.period.text, limits.period.window(now)[0])
            keys += (
                self._key(subject, "rpm", minute),
                self._key(subject, "rpm", minute - 1),
                self._key(subject, "tpm", minute),
                self._key(subject, "tpm", minute - 1),
                self._key(subject, "par"),
                budget_key or self._key(subject, "spend"),
            )
            args += (
                _flag(limits.rpm),
                _flag(limits.tpm),
                _flag(limits.max_parallel),
                _flag(limits.max_budget),
            )
        try:
            async with self._in_flight:
                result = await self._admit_script(keys=keys, args=args)
        except asyncio.CancelledError:
            # the script may have run: give the parallel slot back rather than hold it for lease_ttl
            self._spawn(self._release(member, checks))
            raise
        except STORE_ERRORS as exc:
            return self._unavailable(exc)
        self._recovered()
        if result[0] != 0:
            raise self._refusal(checks, result, now, weight, estimated)
        return _RedisLease(self, member, checks, minute, estimated)

    def _refusal(
        self,
        checks: Sequence[tuple[str, Limits]],
        result: list[Any],
        now: float,
        weight: float,
        estimated: int,
    ) -> RateLimited:
        subject, limits = checks[int(result[0]) - 1]
        limit = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
        if limit == "max_budget":
            assert limits.max_budget is not None and limits.period is not None
            end = limits.period.window(now)[1]
            error = RateLimited(subject, limit, limits.max_budget, end - now, limits.period.text)
        elif limit == "max_parallel":
            assert limits.max_parallel is not None
            error = RateLimited(subject, limit, limits.max_parallel, 1.0)
        else:
            value = limits.rpm if limit == "rpm" else limits.tpm
            assert value is not None
            need = 1 if limit == "rpm" else estimated
            error = RateLimited(
                subject, limit, value, wait_time(int(result[2]), int(result[3]), weight, value, need)
            )
        self.stats.reject(error)
        return error

    async def _finish(
        self, member: str, checks: Sequence[tuple[str, Limits]], minute: int, delta: int, cost: float
    ) -> None:
        now = self._clock()
        current = minute_of(now)[0]
        keys: list[str] = []
        args: list[Any] = [member, delta, repr(float(cost))]
        work = False
        for subject, limits in checks:
            spend_key, spend_ttl = self._key(subject, "spend"), 0
            if limits.period is not None and cost > 0:
                window, end = limits.period.window(now)
                spend_key = self._key(subject, "spend", limits.period.text, window)
                spend_ttl = math.ceil(end - now) + 60
            keys += (self._key(subject, "tpm", minute), self._key(subject, "par"), spend_key)
            tpm = limits.tpm is not None and delta != 0 and current - minute <= 1
            parallel = limits.max_parallel is not None
            args += ("1" if tpm else "0", "1" if parallel else "0", spend_ttl)
            work = work or tpm or parallel or spend_ttl > 0
        if not work:  # e.g. only rpm: nothing to give back, no round trip
            return
        try:
            async with self._in_flight:
                await self._done_script(keys=keys, args=args)
        except asyncio.CancelledError:
            self._spawn(self._release(member, checks))
            raise
        except STORE_ERRORS as exc:
            self._failed(exc)
        else:
            self._recovered()

    async def _release(self, member: str, checks: Sequence[tuple[str, Limits]]) -> None:
        with contextlib.suppress(*STORE_ERRORS):
            async with self._in_flight, self._redis.pipeline(transaction=False) as pipe:
                for subject, limits in checks:
                    if limits.max_parallel is not None:
                        pipe.zrem(self._key(subject, "par"), member)
                await pipe.execute()

    async def seed_spend(self, subject: str, limits: Limits, spent: float) -> bool:
        if limits.period is None:
            return True
        now = self._clock()
        window, end = limits.period.window(now)
        key = self._key(subject, "spend", limits.period.text, window)
        try:
            async with self._in_flight:
                await self._seed_script(keys=[key], args=[repr(float(spent)), math.ceil(end - now) + 60])
        except STORE_ERRORS as exc:
            self._failed(exc)
            return False
        return True

    def _unavailable(self, exc: BaseException | None) -> Lease:
        if exc is not None:
            self._failed(exc)
        if not self._fail_open:
            raise LimitsUnavailable(
                "Rate limits cannot be checked because the gateway's Redis is unreachable; "
                "retry shortly. Operators: check redis_url / CORRAL_REDIS_URL.",
                code="limits_unavailable",
            )
        self.stats.fail_open += 1
        return Lease()

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._skip_until = time.monotonic() + self._retry_interval
        if self._down_since is None:
            self._down_since = time.monotonic()
            mode = "NOT enforced (fail-open)" if self._fail_open else "refusing requests (fail-closed)"
            log.warning(
                "Redis for shared limits is unreachable (%s: %s); limits are %s until it is back",
                type(exc).__name__,
                exc,
                mode,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "Redis for shared limits is back after %.1f s; %d admits went through unlimited so far",
                time.monotonic() - self._down_since,
                self.stats.fail_open,
            )
            self._down_since = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        await self._redis.aclose()


class _RedisLease(Lease):
    __slots__ = ("_checks", "_estimated", "_limiter", "_member", "_minute")

    def __init__(
        self,
        limiter: RedisLimiter,
        member: str,
        checks: tuple[tuple[str, Limits], ...],
        minute: int,
        estimated: int,
    ) -> None:
        super().__init__()
        self._limiter, self._member, self._checks = limiter, member, checks
        self._minute, self._estimated = minute, estimated

    async def _finish(self, tokens: int, cost: float) -> None:
        await self._limiter._finish(self._member, self._checks, self._minute, tokens - self._estimated, cost)
