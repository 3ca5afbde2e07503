"""BudgetSeeder on SQLite and PostgreSQL: the current window's spend from the usage table goes
into the limiter at start and again when a key's budget changes; failures are logged, not fatal."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from corral.accounting.budgets import BudgetSeeder
from corral.keys.cache import KeyCache
from corral.limits import InProcessLimiter, Limits, RateLimited
from corral.store import Store
from corral.store.keys import KeyRecord
from corral.usage import StoreSink
from tests.usage.factory import record

NOW = datetime(2024, 2, 14, 15, 30, tzinfo=UTC)  # a Wednesday afternoon
TODAY = datetime(2024, 2, 14, tzinfo=UTC)  # the start of the current "1d" window


def clock() -> float:
    return NOW.timestamp()


async def spend(store: Store, *rows: tuple[str | None, str | None, datetime, float]) -> None:
    """Usage rows of (key id, user, arrival, cost)."""
    records = [
        record(
            i, request_id=f"r-{i}-{key}-{user}-{at.timestamp()}", key_id=key, user=user, at=at, cost_usd=cost
        )
        for i, (key, user, at, cost) in enumerate(rows)
    ]
    await StoreSink(store.engine).write(records)


async def refused(limiter: InProcessLimiter, subject: str, limits: dict[str, Any]) -> bool:
    """Would one more request of ``subject`` be refused by its budget? (Admits it when not.)"""
    try:
        lease = await limiter.admit(subject, Limits.from_mapping(limits), estimated_tokens=1)
    except RateLimited as exc:
        assert exc.limit == "max_budget"
        return True
    await lease.done(tokens=1, cost=0.0)
    return False


async def cache_of(store: Store) -> KeyCache:
    cache = KeyCache()
    cache.attach(store)
    await cache.load(store)
    return cache


async def test_the_current_windows_spend_is_seeded_for_keys_and_users(store: Store) -> None:
    daily = {"max_budget": 1.0, "budget_period": "1d"}
    over = (await store.keys.create(actor="t", limits=daily)).record.id
    under = (await store.keys.create(actor="t", limits=daily)).record.id
    free = (await store.keys.create(actor="t", owner="alice")).record.id
    await spend(
        store,
        (over, None, TODAY, 0.6),  # the window's first instant counts
        (over, None, NOW - timedelta(minutes=1), 0.6),
        (under, None, TODAY - timedelta(microseconds=1), 50.0),  # yesterday: not counted
        (under, None, TODAY + timedelta(hours=2), 0.5),
        (free, "alice", TODAY - timedelta(days=10), 3.0),  # this month: counts for alice's monthly budget
    )
    limiter = InProcessLimiter(clock=clock)
    cache = await cache_of(store)
    users = {"alice": {"max_budget": 2.0}, "bob": {"max_budget": 2.0}, "carol": {"rpm": 5}}
    seeder = BudgetSeeder(limiter, store.engine, cache.records, users, clock=clock)

    assert await seeder.seed_due() == 3  # over, under and alice spent something this window
    assert await refused(limiter, f"key:{over}", daily)
    assert await refused(limiter, "user:alice", {"max_budget": 2.0})
    assert not await refused(limiter, "user:bob", {"max_budget": 2.0})
    # under has 0.5 of its 1.0 (not 50.5, not 0): one request costing 0.6 takes it over
    lease = await limiter.admit(f"key:{under}", Limits.from_mapping(daily), estimated_tokens=1)
    await lease.done(tokens=1, cost=0.6)
    assert await refused(limiter, f"key:{under}", daily)
    assert await seeder.seed_due() == 0  # nothing changed: nothing is read again


async def test_a_changed_budget_is_seeded_again_on_wake(store: Store) -> None:
    hourly = {"max_budget": 1.0, "budget_period": "1h"}
    key = (await store.keys.create(actor="t", limits=hourly)).record.id
    later = (await store.keys.create(actor="t")).record.id
    await spend(store, (key, None, TODAY + timedelta(hours=10), 1.5), (later, None, TODAY, 4.0))
    limiter = InProcessLimiter(clock=clock)
    cache = await cache_of(store)
    seeder = BudgetSeeder(limiter, store.engine, cache.records, clock=clock)
    store.keys.subscribe(seeder.wake)
    task = asyncio.create_task(seeder.run(3600.0))
    try:
        await asyncio.wait_for(seeder.ready.wait(), 10)
        assert not await refused(limiter, f"key:{key}", hourly)  # spent at 10:00, not in this hour
        daily = {"max_budget": 1.0, "budget_period": "1d"}
        await store.keys.update(key, {"limits": daily}, actor="t")
        await store.keys.update(later, {"limits": {"max_budget": 3.0}}, actor="t")  # a budget appears
        await until(lambda: refused(limiter, f"key:{key}", daily))
        await until(lambda: refused(limiter, f"key:{later}", {"max_budget": 3.0}))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_keys_with_unreadable_limits_are_skipped(store: Store) -> None:
    good = (await store.keys.create(actor="t", limits={"max_budget": 1.0})).record
    bad = dataclasses.replace(good, id="badkey01", limits={"max_budget": 1.0, "budget_period": "fortnight"})
    await spend(store, (good.id, None, NOW, 2.0), ("badkey01", None, NOW, 2.0))
    limiter = InProcessLimiter(clock=clock)
    records: Iterable[KeyRecord] = [good, bad]
    seeder = BudgetSeeder(limiter, store.engine, lambda: records, clock=clock)
    assert await seeder.seed_due() == 1
    assert await refused(limiter, f"key:{good.id}", {"max_budget": 1.0})


async def test_an_unreadable_usage_table_is_logged_and_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail open: passes fail while the usage table is away, are logged once, and a later pass seeds."""
    key = (await store.keys.create(actor="t", limits={"max_budget": 1.0})).record.id
    await spend(store, (key, None, NOW, 2.0))
    await rename(store, "usage", "usage_away")
    limiter = InProcessLimiter(clock=clock)
    seeder = BudgetSeeder(limiter, store.engine, (await cache_of(store)).records, clock=clock)
    task = asyncio.create_task(seeder.run(0.05))
    try:
        await asyncio.wait_for(seeder.ready.wait(), 10)
        assert not await refused(limiter, f"key:{key}", {"max_budget": 1.0})  # serving goes on, unseeded
        await asyncio.sleep(0.3)  # a few more failing passes
        warnings = [
            r for r in caplog.records if r.levelno == logging.WARNING and "could not seed" in r.message
        ]
        assert len(warnings) == 1 and "1 budget(s)" in warnings[0].message
        await rename(store, "usage_away", "usage")
        await until(lambda: refused(limiter, f"key:{key}", {"max_budget": 1.0}))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def rename(store: Store, old: str, new: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))  # test-only names, no input


class DownLimiter(InProcessLimiter):
    """A limiter whose store is down: like the Redis limiter, seed_spend says so, not raises."""

    down = True

    async def seed_spend(self, subject: str, limits: Limits, spent: float) -> bool:
        return not self.down and await super().seed_spend(subject, limits, spent)


async def test_a_seed_the_limiter_could_not_take_is_tried_again(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    key = (await store.keys.create(actor="t", limits={"max_budget": 1.0})).record.id
    await spend(store, (key, None, NOW, 2.0))
    limiter = DownLimiter(clock=clock)
    seeder = BudgetSeeder(limiter, store.engine, (await cache_of(store)).records, clock=clock)
    assert await seeder.seed_due() == 0
    assert any("could not seed" in r.message and "did not take" in r.message for r in caplog.records)
    assert not await refused(limiter, f"key:{key}", {"max_budget": 1.0})
    limiter.down = False
    assert await seeder.seed_due() == 1
    assert await refused(limiter, f"key:{key}", {"max_budget": 1.0})


async def test_a_hung_usage_read_times_out_and_is_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that accepts the query but never answers must not stall the seeder for good."""
    import corral.accounting.budgets as budgets

    key = (await store.keys.create(actor="t", limits={"max_budget": 1.0})).record.id
    await spend(store, (key, None, NOW, 2.0))
    real, hung = budgets.spend_since, asyncio.Event()

    async def hang_once(*args: Any, **kwargs: Any) -> Any:
        if not hung.is_set():
            hung.set()
            await asyncio.sleep(3600)
        return await real(*args, **kwargs)

    monkeypatch.setattr(budgets, "spend_since", hang_once)
    monkeypatch.setattr(budgets, "SEED_TIMEOUT", 0.2)
    limiter = InProcessLimiter(clock=clock)
    seeder = BudgetSeeder(limiter, store.engine, (await cache_of(store)).records, clock=clock)
    task = asyncio.create_task(seeder.run(0.05))
    try:
        await asyncio.wait_for(seeder.ready.wait(), 2)  # the first pass gave up after 0.2 s
        assert any("TimeoutError" in r.message for r in caplog.records if r.levelno == logging.WARNING)
        await until(lambda: refused(limiter, f"key:{key}", {"max_budget": 1.0}))  # a later pass seeded
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_limiter_that_lost_its_counts_gets_them_back_at_the_next_full_read(store: Store) -> None:
    daily = {"max_budget": 1.0, "budget_period": "1d"}
    key = (await store.keys.create(actor="t", limits=daily)).record.id
    await spend(store, (key, None, TODAY + timedelta(hours=1), 1.5))
    now = [NOW.timestamp()]
    limiter = InProcessLimiter(clock=lambda: now[0])
    cache = await cache_of(store)
    seeder = BudgetSeeder(limiter, store.engine, cache.records, clock=lambda: now[0], reseed_every=300.0)
    assert await seeder.seed_due() == 1
    assert await refused(limiter, f"key:{key}", daily)

    limiter.__init__(clock=lambda: now[0])  # type: ignore[misc]  # its store lost every count (a Redis flush)
    assert not await refused(limiter, f"key:{key}", daily)
    now[0] += 299.0
    assert await seeder.seed_due() == 0  # not yet: budgets already read are not read again
    now[0] += 1.0
    assert await seeder.seed_due() == 1
    assert await refused(limiter, f"key:{key}", daily)
