"""Every limit on both limiters (in-process and Redis): triggers at exactly the limit, answers
a sane retry-after, and recovers when the window moves on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from corral.limits import InProcessLimiter, Lease, Limits, RateLimited
from corral.limits.memory import SWEEP_EVERY
from tests.limits.conftest import T0, Clock, MakeLimiter

KEY = "key:k1"


async def admit_n(
    limiter: object, n: int, limits: Limits, tokens: int = 0, subject: str = KEY
) -> list[Lease]:
    return [await limiter.admit(subject, limits, estimated_tokens=tokens) for _ in range(n)]  # type: ignore[attr-defined]


async def refused(limiter: object, limits: Limits, tokens: int = 0, subject: str = KEY) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        await limiter.admit(subject, limits, estimated_tokens=tokens)  # type: ignore[attr-defined]
    return info.value


async def test_no_limits_admits_everything(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    leases = await admit_n(limiter, 1000, Limits())
    await leases[0].done(tokens=10**9, cost=10**9)
    assert limiter.stats.rejected == {}


async def test_rpm_allows_exactly_n_then_429(make_limiter: MakeLimiter, clock: Clock) -> None:
    limiter = make_limiter()
    limits = Limits(rpm=5)
    clock.advance(10)
    await admit_n(limiter, 5, limits)
    error = await refused(limiter, limits)
    assert (error.limit, error.status) == ("rpm", 429)
    assert "rpm limit (5 requests per minute)" in error.message
    assert 50 <= error.retry_after <= 60  # 50 s to the next minute, then the old count fades
    assert limiter.stats.rejected == {("key", "rpm"): 1}
    # another subject has its own count
    await admit_n(limiter, 5, limits, subject="key:k2")
    # after the retry-after the next request passes, and only one
    clock.advance(error.retry_after)
    await admit_n(limiter, 1, limits)
    await refused(limiter, limits)


async def test_rpm_window_slides(make_limiter: MakeLimiter, clock: Clock) -> None:
    limiter = make_limiter()
    limits = Limits(rpm=10)
    await admit_n(limiter, 10, limits)
    await refused(limiter, limits)
    clock.advance(90)  # half of the previous minute still counts: 5 of 10
    await admit_n(limiter, 5, limits)
    await refused(limiter, limits)
    clock.advance(120)  # both minutes are gone
    await admit_n(limiter, 10, limits)
    await refused(limiter, limits)


async def test_rpm_zero_refuses(make_limiter: MakeLimiter) -> None:
    error = await refused(make_limiter(), Limits(rpm=0))
    assert error.limit == "rpm" and error.retry_after == 60


async def test_tpm_counts_estimates_and_corrects_with_real_tokens(
    make_limiter: MakeLimiter, clock: Clock
) -> None:
    limiter = make_limiter()
    limits = Limits(tpm=1000)
    leases = await admit_n(limiter, 10, limits, tokens=100)
    error = await refused(limiter, limits, tokens=100)
    assert error.limit == "tpm" and "tpm limit (1000 tokens per minute)" in error.message
    assert 60 <= error.retry_after <= 120  # the sliding-minute approximation (see windows)
    # two requests used 50 tokens, not 100: room for one more estimate of 100
    await leases[0].done(tokens=50, cost=0)
    await leases[1].done(tokens=50, cost=0)
    await admit_n(limiter, 1, limits, tokens=100)
    await refused(limiter, limits, tokens=1)
    # a request that used more than estimated takes room from the next ones
    clock.advance(120)
    (big,) = await admit_n(limiter, 1, limits, tokens=100)
    await big.done(tokens=950, cost=0)
    await admit_n(limiter, 1, limits, tokens=50)
    await refused(limiter, limits, tokens=1)


async def test_tpm_correction_lands_in_the_minute_of_the_admit(
    make_limiter: MakeLimiter, clock: Clock
) -> None:
    limiter = make_limiter()
    limits = Limits(tpm=1000)
    (lease,) = await admit_n(limiter, 1, limits, tokens=1000)
    clock.advance(90)  # next minute, half-way: 500 of the previous minute's 1000 count
    await refused(limiter, limits, tokens=600)
    await lease.done(tokens=200, cost=0)  # the previous minute really held 200 -> 100 count
    await admit_n(limiter, 1, limits, tokens=900)
    await refused(limiter, limits, tokens=1)


async def test_one_request_larger_than_tpm_passes_alone(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    limits = Limits(tpm=100)
    await admit_n(limiter, 1, limits, tokens=500)
    await refused(limiter, limits, tokens=1)


async def test_max_parallel_with_concurrent_requests(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    limits = Limits(max_parallel=3)
    release = asyncio.Event()
    outcomes: list[str] = []

    async def request() -> None:
        try:
            lease = await limiter.admit(KEY, limits, estimated_tokens=0)
        except RateLimited as error:
            assert error.limit == "max_parallel" and error.retry_after == 1
            assert "max_parallel limit (3 requests at once)" in error.message
            outcomes.append("429")
            return
        outcomes.append("ok")
        await release.wait()
        await lease.done(tokens=0, cost=0)

    tasks = [asyncio.create_task(request()) for _ in range(10)]
    while len(outcomes) < 10:
        await asyncio.sleep(0.001)
    assert outcomes.count("ok") == 3 and outcomes.count("429") == 7
    release.set()
    await asyncio.gather(*tasks)
    leases = await admit_n(limiter, 3, limits)
    await refused(limiter, limits)
    await leases[0].done(tokens=0, cost=0)
    await admit_n(limiter, 1, limits)


async def test_a_lease_never_done_frees_its_slot_after_the_ttl(
    make_limiter: MakeLimiter, clock: Clock
) -> None:
    limiter = make_limiter(lease_ttl=30.0)
    limits = Limits(max_parallel=1)
    await admit_n(limiter, 1, limits)
    clock.advance(29)
    await refused(limiter, limits)
    clock.advance(2)
    await admit_n(limiter, 1, limits)


async def test_budget_per_period(make_limiter: MakeLimiter, clock: Clock) -> None:
    limiter = make_limiter()
    limits = Limits(max_budget=1.0, budget_period="1d")
    for _ in range(3):  # 0.0, 0.4, 0.8 spent before each: all under the budget
        (lease,) = await admit_n(limiter, 1, limits)
        await lease.done(tokens=10, cost=0.4)
    error = await refused(limiter, limits)
    midnight = datetime(2023, 11, 15, tzinfo=UTC).timestamp()
    assert error.limit == "max_budget" and error.code == "budget_exceeded"
    assert error.retry_after == pytest.approx(midnight - clock.now, abs=1)
    assert "max_budget (1 per 1d period)" in error.message and "retry in 106 min" in error.message
    # the user's budget is separate from the key's
    await admit_n(limiter, 1, limits, subject="user:alice")
    clock.now = midnight - 1
    await refused(limiter, limits)
    clock.now = midnight
    await admit_n(limiter, 1, limits)


async def test_done_is_idempotent(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    limits = Limits(tpm=1000, max_parallel=2, max_budget=1.0, budget_period="1h")
    first, second = await admit_n(limiter, 2, limits, tokens=400)
    for _ in range(3):
        await first.done(tokens=100, cost=0.6)
    # the slot was freed once (1 open), the tokens corrected once (500 used), spent once (0.6)
    (third,) = await admit_n(limiter, 1, limits, tokens=500)
    await refused(limiter, limits, tokens=1)
    await second.done(tokens=400, cost=0.3)
    await second.done(tokens=400, cost=0.3)
    await third.done(tokens=0, cost=0)
    (fourth,) = await admit_n(limiter, 1, limits, tokens=1)  # 0.9 spent, not 1.2: still admitted
    await fourth.done(tokens=1, cost=0.2)
    assert (await refused(limiter, limits, tokens=1)).limit == "max_budget"


async def test_admit_many_is_all_or_nothing(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    key, user = Limits(rpm=10), Limits(rpm=1)
    lease = await limiter.admit_many([(KEY, key), ("user:alice", user)], estimated_tokens=0)
    error = await asyncio.gather(
        limiter.admit_many([(KEY, key), ("user:alice", user)], estimated_tokens=0), return_exceptions=True
    )
    assert isinstance(error[0], RateLimited) and error[0].scope == "user"
    assert error[0].message.startswith("The user who owns this key is over its rpm limit")
    await lease.done(tokens=0, cost=0)
    await admit_n(limiter, 9, key)  # the refused admit took nothing from the key
    await refused(limiter, key)


async def test_seed_spend_restores_a_budget(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    limits = Limits(max_budget=5.0, budget_period="monthly")
    assert await limiter.seed_spend(KEY, limits, 4.5)
    await limiter.seed_spend(KEY, limits, 1.0)  # never lowers it
    (lease,) = await admit_n(limiter, 1, limits)
    await lease.done(tokens=0, cost=0.5)
    error = await refused(limiter, limits)
    first_of_december = datetime(2023, 12, 1, tzinfo=UTC).timestamp()
    assert error.retry_after == pytest.approx(first_of_december - T0, abs=1)


async def test_in_process_admit_is_cheap_and_sweeps_idle_subjects(clock: Clock) -> None:
    limiter = InProcessLimiter(clock=clock)
    limits = Limits(rpm=10**6, tpm=10**9, max_parallel=10**6, max_budget=10**6)
    n = 20_000
    start = time.perf_counter()
    for i in range(n):
        lease = await limiter.admit(f"key:{i % 100}", limits, estimated_tokens=10)
        await lease.done(tokens=12, cost=0.0)
    per_call = (time.perf_counter() - start) / n
    print(f"\nin-process admit + done (all four limits): {per_call * 1e6:.2f} µs per request")
    clock.advance(180)
    for _ in range(SWEEP_EVERY):
        await limiter.admit("key:fresh", Limits(rpm=10**6), estimated_tokens=0)
    assert set(limiter._subjects) == {"key:fresh"}
