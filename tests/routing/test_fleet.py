"""Fleet.acquire: first free target, bounded waits for a slot, warm_wait, panic mode."""

from __future__ import annotations

import asyncio
import time

import pytest

from corral.config.schema import RouterConfig
from corral.core.call import Target
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState

MODEL = "qwen3:8b"


def cfg(**kw: float) -> RouterConfig:
    base: dict[str, float] = {"queue_timeout": 0.1, "warm_wait": 0.05}
    base.update(kw)
    return RouterConfig(**base)  # type: ignore[arg-type]


def far() -> float:
    return time.monotonic() + 30.0


def t(name: str, priority: int = 0) -> Target:
    return Target(name, MODEL, priority)


def warm(name: str, **kw: object) -> DeploymentState:
    return DeploymentState(name, "ollama", max_parallel=1, loaded={MODEL: None}, **kw)  # type: ignore[arg-type]


def cold(name: str, **kw: object) -> DeploymentState:
    return DeploymentState(name, "ollama", max_parallel=1, **kw)  # type: ignore[arg-type]


def eject(state: DeploymentState) -> None:
    state.record_failure(time.monotonic(), "HTTP 500", RouterConfig(eject_after=1, eject_base=60.0))


async def release_later(fleet: Fleet, state: DeploymentState, delay: float) -> None:
    await asyncio.sleep(delay)
    fleet.release(state)


# the first free target ---------------------------------------------------------------------


async def test_takes_the_first_free_target_and_starts_it() -> None:
    a, b = cold("a"), cold("b")
    fleet = Fleet([a, b], cfg())
    assert await fleet.acquire([t("a"), t("b")], far(), None) == t("a")
    assert (a.in_flight, a.requests, b.in_flight) == (1, 1, 0)
    assert await fleet.acquire([t("a"), t("b")], far(), None) == t("b")  # a is full now
    assert b.in_flight == 1


async def test_skips_unroutable_full_and_busy_targets() -> None:
    ejected, full, busy, free = cold("e"), cold("f", in_flight=1), cold("b"), cold("ok")
    eject(ejected)
    busy.record_busy(time.monotonic(), 10.0)
    fleet = Fleet([ejected, full, busy, free], cfg())
    order = [t("e"), t("f"), t("b"), t("ok")]
    assert await fleet.acquire(order, far(), None) == t("ok")
    assert (ejected.in_flight, full.in_flight, busy.in_flight, free.in_flight) == (0, 1, 0, 1)


async def test_empty_order_is_none() -> None:
    assert await Fleet([], cfg()).acquire([], far(), None) is None


async def test_release_frees_the_slot() -> None:
    a = cold("a")
    fleet = Fleet([a], cfg())
    assert await fleet.acquire([t("a")], far(), None) == t("a")
    fleet.release(a)
    assert a.in_flight == 0
    assert await fleet.acquire([t("a")], far(), None) == t("a")


# waiting for a slot ------------------------------------------------------------------------


async def test_waits_for_a_release_when_all_are_full() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], cfg(queue_timeout=2.0))
    started = time.monotonic()
    waiter = asyncio.create_task(fleet.acquire([t("a")], far(), None))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    fleet.release(a)
    assert await asyncio.wait_for(waiter, 1.0) == t("a")
    assert a.in_flight == 1
    assert time.monotonic() - started < 0.5  # woken by the release, not by the queue timeout


async def test_one_release_lets_exactly_one_of_two_waiters_in() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], cfg(queue_timeout=0.2))
    first = asyncio.create_task(fleet.acquire([t("a")], far(), None))
    second = asyncio.create_task(fleet.acquire([t("a")], far(), None))
    await asyncio.sleep(0.02)
    fleet.release(a)
    results = await asyncio.gather(first, second)
    assert sorted(results, key=lambda r: r is None) == [t("a"), None]
    assert a.in_flight == 1


async def test_gives_up_after_queue_timeout() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], cfg(queue_timeout=0.1))
    started = time.monotonic()
    assert await fleet.acquire([t("a")], far(), None) is None
    assert 0.09 <= time.monotonic() - started < 0.3
    assert a.in_flight == 1


async def test_gives_up_at_the_deadline_when_it_comes_first() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], cfg(queue_timeout=5.0))
    started = time.monotonic()
    assert await fleet.acquire([t("a")], started + 0.08, None) is None
    assert 0.07 <= time.monotonic() - started < 0.3


async def test_wakes_when_a_busy_backoff_ends_without_a_release() -> None:
    a = cold("a")
    a.record_busy(time.monotonic(), 0.08)
    fleet = Fleet([a], cfg(queue_timeout=1.0))
    started = time.monotonic()
    assert await fleet.acquire([t("a")], far(), None) == t("a")
    assert 0.07 <= time.monotonic() - started < 0.5


async def test_ejected_target_is_not_used_while_another_is_routable() -> None:
    ejected, full = cold("e"), cold("f", in_flight=1)
    eject(ejected)
    fleet = Fleet([ejected, full], cfg(queue_timeout=0.05))
    assert await fleet.acquire([t("e"), t("f")], far(), None) is None
    assert ejected.in_flight == 0


# warm_wait ---------------------------------------------------------------------------------


async def test_waits_for_the_warm_target_when_a_slot_frees_in_time() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh")
    fleet = Fleet([hot, fresh], cfg(queue_timeout=2.0, warm_wait=0.3))
    started = time.monotonic()
    releaser = asyncio.create_task(release_later(fleet, hot, 0.05))
    assert await fleet.acquire([t("hot"), t("fresh")], far(), None) == t("hot")
    await releaser
    assert time.monotonic() - started < 0.25
    assert (hot.in_flight, fresh.in_flight) == (1, 0)


async def test_takes_the_cold_target_after_warm_wait() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh")
    fleet = Fleet([hot, fresh], cfg(queue_timeout=2.0, warm_wait=0.1))
    started = time.monotonic()
    assert await fleet.acquire([t("hot"), t("fresh")], far(), None) == t("fresh")
    assert 0.09 <= time.monotonic() - started < 0.3
    assert fresh.in_flight == 1


async def test_warm_wait_honours_the_context_length() -> None:
    hot = DeploymentState("hot", "ollama", max_parallel=1, in_flight=1, loaded={MODEL: 4096})
    fresh = cold("fresh")
    fleet = Fleet([hot, fresh], cfg(queue_timeout=2.0, warm_wait=0.3))
    started = time.monotonic()
    # loaded with 4096, the call needs 8192: a reload either way, so no reason to wait
    assert await fleet.acquire([t("hot"), t("fresh")], far(), 8192) == t("fresh")
    assert time.monotonic() - started < 0.2


@pytest.mark.parametrize("free_kind", ["openai", "warm"])
async def test_no_warm_wait_when_the_free_target_is_not_cold(free_kind: str) -> None:
    hot = warm("hot", in_flight=1)
    other = DeploymentState("other", "openai") if free_kind == "openai" else warm("other")
    fleet = Fleet([hot, other], cfg(queue_timeout=2.0, warm_wait=0.3))
    started = time.monotonic()
    assert await fleet.acquire([t("hot"), t("other")], far(), None) == t("other")
    assert time.monotonic() - started < 0.2


async def test_no_warm_wait_when_the_warm_target_is_backing_off() -> None:
    hot, fresh = warm("hot"), cold("fresh")
    hot.record_busy(time.monotonic(), 5.0)
    fleet = Fleet([hot, fresh], cfg(queue_timeout=2.0, warm_wait=0.3))
    started = time.monotonic()
    assert await fleet.acquire([t("hot"), t("fresh")], far(), None) == t("fresh")
    assert time.monotonic() - started < 0.2


async def test_warm_wait_longer_than_queue_timeout_still_takes_the_free_cold_target() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh")
    fleet = Fleet([hot, fresh], cfg(queue_timeout=0.05, warm_wait=0.2))
    assert await fleet.acquire([t("hot"), t("fresh")], far(), None) == t("fresh")


# panic -------------------------------------------------------------------------------------


async def test_panic_uses_ejected_targets_when_none_is_routable() -> None:
    a, b = cold("a"), cold("b")
    eject(a)
    eject(b)
    fleet = Fleet([a, b], cfg())
    assert await fleet.acquire([t("b"), t("a")], far(), None) == t("b")
    assert b.in_flight == 1
    assert await fleet.acquire([t("b"), t("a")], far(), None) == t("a")


async def test_panic_still_respects_capacity() -> None:
    a = cold("a", in_flight=1)
    a.record_misconfigured("HTTP 401")
    fleet = Fleet([a], cfg(queue_timeout=0.05))
    assert await fleet.acquire([t("a")], far(), None) is None
    fleet.release(a)
    assert await fleet.acquire([t("a")], far(), None) == t("a")


async def test_trial_gates_a_second_request_while_another_target_is_routable() -> None:
    probe = cold("probe")
    probe.max_parallel = 0
    probe.record_failure(time.monotonic() - 100, "x", RouterConfig(eject_after=1, eject_base=1.0))
    backup = cold("backup", in_flight=1)
    fleet = Fleet([probe, backup], cfg(queue_timeout=0.05))
    order = [t("probe"), t("backup")]
    assert await fleet.acquire(order, far(), None) == t("probe")  # the one trial
    assert probe.trial_in_flight
    assert await fleet.acquire(order, far(), None) is None  # no second trial, backup full
    assert probe.in_flight == 1


async def test_a_cancelled_waiter_never_loses_the_slot() -> None:
    a = cold("a")
    fleet = Fleet([a], cfg(queue_timeout=5, warm_wait=0))
    assert await fleet.acquire([t("a")], far(), None) == t("a")
    first = asyncio.create_task(fleet.acquire([t("a")], far(), None))
    second = asyncio.create_task(fleet.acquire([t("a")], far(), None))
    await asyncio.sleep(0.02)  # both are queued now, first in line
    first.cancel()
    fleet.release(a)  # the wake-up goes to the first waiter, which is being cancelled
    await asyncio.sleep(0.02)
    assert first.cancelled()  # it handed the wake-up on: no slot and no wake-up may be lost
    started = time.monotonic()
    assert await asyncio.wait_for(second, 1) == t("a")
    assert time.monotonic() - started < 0.2


async def test_each_release_wakes_one_waiter_not_all() -> None:
    a = cold("a")
    fleet = Fleet([a], cfg(queue_timeout=5, warm_wait=0))
    await fleet.acquire([t("a")], far(), None)
    waiters = [asyncio.create_task(fleet.acquire([t("a")], far(), None)) for _ in range(5)]
    await asyncio.sleep(0.02)
    fleet.release(a)
    await asyncio.sleep(0.02)
    assert sum(w.done() for w in waiters) == 1
    for _ in range(4):
        fleet.release(a)
        await asyncio.sleep(0.01)
    assert all(w.done() for w in waiters)


async def test_a_woken_waiter_that_loses_the_slot_keeps_its_place_and_wakes_nobody() -> None:
    a = cold("a")
    fleet = Fleet([a], cfg(queue_timeout=5, warm_wait=0))
    await fleet.acquire([t("a")], far(), None)
    waiters = [asyncio.create_task(fleet.acquire([t("a")], far(), None)) for _ in range(5)]
    await asyncio.sleep(0.02)
    newcomer = asyncio.create_task(fleet.acquire([t("a")], far(), None))  # runs before the woken one
    fleet.release(a)
    await asyncio.sleep(0.02)
    assert newcomer.done() and not any(w.done() for w in waiters)
    assert fleet.wakeups == 1  # the loser went back to sleep without waking the rest of the queue
    fleet.release(a)  # the newcomer's slot: the first waiter, still first in line, gets it
    await asyncio.sleep(0.02)
    assert [w.done() for w in waiters] == [True, False, False, False, False]
    assert fleet.wakeups == 2
    for w in waiters:
        w.cancel()


async def test_a_release_wakes_only_waiters_that_can_use_that_deployment() -> None:
    a, b = cold("a"), cold("b")
    fleet = Fleet([a, b], cfg(queue_timeout=5, warm_wait=0))
    await fleet.acquire([t("a")], far(), None)
    await fleet.acquire([t("b")], far(), None)
    on_b = asyncio.create_task(fleet.acquire([t("b")], far(), None))
    on_a = asyncio.create_task(fleet.acquire([t("a")], far(), None))
    on_both = asyncio.create_task(fleet.acquire([t("b"), t("a")], far(), None))
    await asyncio.sleep(0.02)
    fleet.release(a)  # on_b queued first overall, but cannot use a
    await asyncio.sleep(0.02)
    assert (on_a.done(), on_b.done(), on_both.done()) == (True, False, False) and fleet.wakeups == 1
    fleet.release(a)
    await asyncio.sleep(0.02)
    assert on_both.done() and on_both.result() == t("a") and not on_b.done()
    fleet.release(b)
    assert await asyncio.wait_for(on_b, 1) == t("b")


async def test_queues_do_not_keep_dead_waiters_forever() -> None:
    a, b = cold("a"), cold("b")
    fleet = Fleet([a, b], cfg(queue_timeout=5, warm_wait=0))
    await fleet.acquire([t("a")], far(), None)
    await fleet.acquire([t("b")], far(), None)
    for _ in range(200):  # each waits on both; b never releases, a serves them one by one
        waiter = asyncio.create_task(fleet.acquire([t("b"), t("a")], far(), None))
        await asyncio.sleep(0)
        fleet.release(a)
        assert await asyncio.wait_for(waiter, 1) == t("a")
    assert len(fleet._queues["b"]) <= 64


async def test_a_waiter_that_takes_another_deployment_passes_the_wake_up_on() -> None:
    x, y = cold("x"), cold("y")
    fleet = Fleet([x, y], cfg(queue_timeout=2, warm_wait=0))
    await fleet.acquire([t("x")], far(), None)
    await fleet.acquire([t("y")], far(), None)
    first = asyncio.create_task(fleet.acquire([t("y"), t("x")], far(), None))
    second = asyncio.create_task(fleet.acquire([t("x")], far(), None))
    await asyncio.sleep(0.02)
    fleet.release(x)  # wakes `first` (first in x's queue)...
    fleet.release(y)  # ...which then prefers y: x's slot must reach `second`
    started = time.monotonic()
    assert await asyncio.wait_for(first, 1) == t("y")
    assert await asyncio.wait_for(second, 1) == t("x")
    assert time.monotonic() - started < 0.2


async def test_a_panic_waiter_is_woken_by_a_release_on_an_ejected_deployment() -> None:
    x, y = cold("x"), cold("y")
    fleet = Fleet([x, y], cfg(queue_timeout=2, warm_wait=0))
    await fleet.acquire([t("x")], far(), None)
    await fleet.acquire([t("y")], far(), None)
    eject(x)
    mixed = asyncio.create_task(fleet.acquire([t("x"), t("y")], far(), None))  # y is routable: no panic
    panicking = asyncio.create_task(fleet.acquire([t("x")], far(), None))  # only x: panic mode
    await asyncio.sleep(0.02)
    started = time.monotonic()
    fleet.release(x)
    assert await asyncio.wait_for(panicking, 1) == t("x")
    assert time.monotonic() - started < 0.2 and not mixed.done()
    mixed.cancel()


async def test_waiters_declining_a_cold_slot_do_not_bounce_wake_ups_during_warm_wait() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh", in_flight=1)
    fleet = Fleet([hot, fresh], cfg(queue_timeout=2.0, warm_wait=0.2))
    waiters = [asyncio.create_task(fleet.acquire([t("hot"), t("fresh")], far(), None)) for _ in range(2)]
    await asyncio.sleep(0.02)
    fleet.release(fresh)  # a cold slot frees while both wait for the warm one
    await asyncio.sleep(0.1)
    assert fleet.wakeups <= 1 and not any(w.done() for w in waiters)
    await asyncio.sleep(0.2)  # warm_wait is over: one of them takes the cold slot
    assert [w.result() for w in waiters if w.done()] == [t("fresh")]
    fleet.release(hot)  # and the other gets the warm one
    got = await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert sorted(x.provider for x in got) == ["fresh", "hot"]


async def test_a_waiter_notices_an_ejection_ending_without_any_release() -> None:
    x = cold("x")
    fleet = Fleet([x], cfg(queue_timeout=2, warm_wait=0))
    y = cold("y")
    fleet.states["y"] = y
    await fleet.acquire([t("y")], far(), None)  # y full; x ejected briefly, no release will come
    x.ejected_until = time.monotonic() + 0.1
    x.ejections, x.consecutive_failures = 1, 1
    started = time.monotonic()
    assert await asyncio.wait_for(fleet.acquire([t("y"), t("x")], far(), None), 1) == t("x")
    assert 0.08 <= time.monotonic() - started < 0.3
