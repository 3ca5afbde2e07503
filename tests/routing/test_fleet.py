"""Fleet.acquire: first free target, bounded waits for a slot, warm_wait, panic mode.

No test sleeps to synchronise or measures how long something took: a test waits for a
condition on the fleet's own state (``Fleet.queued``: requests queued on a deployment and not
yet woken) or for a task to finish. "Woken at once, not by the timeout" is checked by making
the timeout long (QUEUE_TIMEOUT) and bounding the wait far below it (PROMPT).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from corral.config.schema import RouterConfig
from corral.core.call import Target
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState

MODEL = "qwen3:8b"
QUEUE_TIMEOUT = 30.0  # long: a waiter served before it was served by a wake-up, not by giving up
PROMPT = 2.0  # how long a test waits for what must happen at once (far below QUEUE_TIMEOUT)


def cfg(**kw: float) -> RouterConfig:
    base: dict[str, float] = {"queue_timeout": 0.1, "warm_wait": 0.05}
    base.update(kw)
    return RouterConfig(**base)  # type: ignore[arg-type]


# A waiter re-checks when warm_wait ends; with warm_wait as long as the queue timeout it waits
# once, so only a wake-up (a release, a hand-on, a back-off or ejection ending) serves it in time.
PATIENT = cfg(queue_timeout=QUEUE_TIMEOUT, warm_wait=QUEUE_TIMEOUT)


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


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition on the fleet's state (it is met within a few turns of the loop)."""
    async with asyncio.timeout(PROMPT):
        while not predicate():
            await asyncio.sleep(0)


async def served(task: asyncio.Future[Target | None]) -> Target | None:
    """The task's result, which must come at once (within PROMPT), not at a queue timeout."""
    try:
        return await asyncio.wait_for(task, PROMPT)
    except TimeoutError:
        pytest.fail(f"not served within {PROMPT:g} s: a wake-up was lost")


def waiting(fleet: Fleet, targets: list[Target]) -> asyncio.Task[Target | None]:
    return asyncio.create_task(fleet.acquire(targets, far(), None))


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
    fleet = Fleet([a], PATIENT)
    waiter = waiting(fleet, [t("a")])
    await until(lambda: fleet.queued("a") == 1)
    assert not waiter.done() and a.in_flight == 1
    fleet.release(a)
    assert fleet.wakeups == 1 and fleet.queued("a") == 0
    assert await served(waiter) == t("a")  # woken by the release, not by the queue timeout
    assert a.in_flight == 1


async def test_one_release_lets_exactly_one_of_two_waiters_in() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], cfg(queue_timeout=0.2, warm_wait=0.2))
    first, second = waiting(fleet, [t("a")]), waiting(fleet, [t("a")])
    await until(lambda: fleet.queued("a") == 2)
    fleet.release(a)
    results = await asyncio.gather(first, second)
    assert results == [t("a"), None]  # the first in line got it; the second gave up at its timeout
    assert a.in_flight == 1 and fleet.wakeups == 1


async def test_gives_up_after_queue_timeout() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], cfg(queue_timeout=0.1))
    waiter = waiting(fleet, [t("a")])  # the deadline is 30 s away: the queue timeout ends the wait
    await until(lambda: fleet.queued("a") == 1)  # it waited rather than failing at once
    assert await served(waiter) is None
    assert a.in_flight == 1 and fleet.queued("a") == 0 and fleet.wakeups == 0


async def test_gives_up_at_the_deadline_when_it_comes_first() -> None:
    a = cold("a", in_flight=1)
    fleet = Fleet([a], PATIENT)
    waiter = asyncio.create_task(fleet.acquire([t("a")], time.monotonic() + 0.05, None))
    await until(lambda: fleet.queued("a") == 1)
    assert await served(waiter) is None  # at the request's deadline, long before the queue timeout
    assert a.in_flight == 1


async def test_wakes_when_a_busy_backoff_ends_without_a_release() -> None:
    a = cold("a")
    a.record_busy(time.monotonic(), 0.05)
    fleet = Fleet([a], PATIENT)
    waiter = waiting(fleet, [t("a")])
    await until(lambda: fleet.queued("a") == 1)  # busy: it waits...
    assert await served(waiter) == t("a")  # ...and takes the slot when the back-off ends
    assert fleet.wakeups == 0  # no release woke it: the back-off's end did


async def test_ejected_target_is_not_used_while_another_is_routable() -> None:
    ejected, full = cold("e"), cold("f", in_flight=1)
    eject(ejected)
    fleet = Fleet([ejected, full], cfg(queue_timeout=0.05))
    assert await fleet.acquire([t("e"), t("f")], far(), None) is None
    assert ejected.in_flight == 0


# warm_wait ---------------------------------------------------------------------------------


async def test_waits_for_the_warm_target_when_a_slot_frees_in_time() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh")
    fleet = Fleet([hot, fresh], cfg(queue_timeout=QUEUE_TIMEOUT, warm_wait=QUEUE_TIMEOUT))
    waiter = waiting(fleet, [t("hot"), t("fresh")])
    await until(lambda: fleet.queued("hot") == 1)
    assert fleet.queued("fresh") == 0 and fresh.in_flight == 0  # it declines the free cold one
    fleet.release(hot)
    assert await served(waiter) == t("hot")
    assert (hot.in_flight, fresh.in_flight) == (1, 0)


async def test_takes_the_cold_target_after_warm_wait() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh")
    fleet = Fleet([hot, fresh], cfg(queue_timeout=QUEUE_TIMEOUT, warm_wait=0.05))
    waiter = waiting(fleet, [t("hot"), t("fresh")])
    await until(lambda: fleet.queued("hot") == 1)  # first it waits for the warm one...
    assert fresh.in_flight == 0
    assert await served(waiter) == t("fresh")  # ...then, warm_wait over, takes the cold one
    assert (hot.in_flight, fresh.in_flight) == (1, 1) and fleet.wakeups == 0


# No wait at all in these: warm_wait is as long as the queue timeout, so had the request waited
# for the warm target it would not be served within PROMPT.
NO_WAIT = PATIENT


async def test_warm_wait_honours_the_context_length() -> None:
    hot = DeploymentState("hot", "ollama", max_parallel=1, in_flight=1, loaded={MODEL: 4096})
    fresh = cold("fresh")
    fleet = Fleet([hot, fresh], NO_WAIT)
    # loaded with 4096, the call needs 8192: a reload either way, so no reason to wait
    got = asyncio.ensure_future(fleet.acquire([t("hot"), t("fresh")], far(), 8192))
    assert await served(got) == t("fresh")
    assert fleet.queued("hot") == 0


@pytest.mark.parametrize("free_kind", ["openai", "warm"])
async def test_no_warm_wait_when_the_free_target_is_not_cold(free_kind: str) -> None:
    hot = warm("hot", in_flight=1)
    other = DeploymentState("other", "openai") if free_kind == "openai" else warm("other")
    fleet = Fleet([hot, other], NO_WAIT)
    got = asyncio.ensure_future(fleet.acquire([t("hot"), t("other")], far(), None))
    assert await served(got) == t("other")


async def test_no_warm_wait_when_the_warm_target_is_backing_off() -> None:
    hot, fresh = warm("hot"), cold("fresh")
    hot.record_busy(time.monotonic(), 5.0)
    fleet = Fleet([hot, fresh], NO_WAIT)
    got = asyncio.ensure_future(fleet.acquire([t("hot"), t("fresh")], far(), None))
    assert await served(got) == t("fresh")


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


@pytest.mark.parametrize("woken_first", [True, False], ids=["woken-then-cancelled", "cancelled-then-freed"])
async def test_a_cancelled_waiter_never_loses_the_slot(woken_first: bool) -> None:
    a = cold("a")
    fleet = Fleet([a], PATIENT)
    assert await fleet.acquire([t("a")], far(), None) == t("a")
    first, second = waiting(fleet, [t("a")]), waiting(fleet, [t("a")])
    await until(lambda: fleet.queued("a") == 2)  # both queued, first in line
    if woken_first:
        fleet.release(a)  # the wake-up goes to the first waiter...
        first.cancel()  # ...whose client leaves before it runs: it must hand the wake-up on
    else:
        first.cancel()
        fleet.release(a)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await served(second) == t("a")  # no slot and no wake-up lost
    assert a.in_flight == 1


async def test_each_release_wakes_one_waiter_not_all_in_order() -> None:
    a = cold("a")
    fleet = Fleet([a], PATIENT)
    await fleet.acquire([t("a")], far(), None)
    waiters = [waiting(fleet, [t("a")]) for _ in range(5)]
    await until(lambda: fleet.queued("a") == 5)
    for n, waiter in enumerate(waiters):
        fleet.release(a)
        assert fleet.wakeups == n + 1 and fleet.queued("a") == 4 - n  # one woken, the rest queued
        assert await served(waiter) == t("a")  # the first in line
        assert not any(w.done() for w in waiters[n + 1 :])
    assert a.in_flight == 1


async def test_a_woken_waiter_that_loses_the_slot_keeps_its_place_and_wakes_nobody() -> None:
    a = cold("a")
    fleet = Fleet([a], PATIENT)
    await fleet.acquire([t("a")], far(), None)
    waiters = [waiting(fleet, [t("a")]) for _ in range(5)]
    await until(lambda: fleet.queued("a") == 5)
    newcomer = waiting(fleet, [t("a")])  # scheduled before the woken one runs
    fleet.release(a)
    assert await served(newcomer) == t("a")  # it took the free slot first
    await until(lambda: fleet.queued("a") == 5)  # the woken one lost the race and queued again
    assert not any(w.done() for w in waiters)
    assert fleet.wakeups == 1  # the loser went back to sleep without waking the rest of the queue
    fleet.release(a)  # the newcomer's slot: the first waiter, still first in line, gets it
    assert await served(waiters[0]) == t("a")
    assert not any(w.done() for w in waiters[1:]) and fleet.wakeups == 2
    for w in waiters[1:]:
        w.cancel()


async def test_a_release_wakes_only_waiters_that_can_use_that_deployment() -> None:
    a, b = cold("a"), cold("b")
    fleet = Fleet([a, b], PATIENT)
    await fleet.acquire([t("a")], far(), None)
    await fleet.acquire([t("b")], far(), None)
    on_b = waiting(fleet, [t("b")])
    await until(lambda: fleet.queued("b") == 1)
    on_a = waiting(fleet, [t("a")])
    await until(lambda: fleet.queued("a") == 1)
    on_both = waiting(fleet, [t("b"), t("a")])
    await until(lambda: fleet.queued("a") == 2 and fleet.queued("b") == 2)
    fleet.release(a)  # on_b queued first overall, but cannot use a
    assert await served(on_a) == t("a")
    assert not on_b.done() and not on_both.done() and fleet.wakeups == 1
    fleet.release(a)
    assert await served(on_both) == t("a")
    assert not on_b.done()
    fleet.release(b)
    assert await served(on_b) == t("b")


async def test_queues_do_not_keep_dead_waiters_forever() -> None:
    a, b = cold("a"), cold("b")
    fleet = Fleet([a, b], PATIENT)
    await fleet.acquire([t("a")], far(), None)
    await fleet.acquire([t("b")], far(), None)
    for _ in range(200):  # each waits on both; b never releases, a serves them one by one
        waiter = waiting(fleet, [t("b"), t("a")])
        await until(lambda: fleet.queued("a") == 1)
        fleet.release(a)
        assert await served(waiter) == t("a")
    assert len(b.waiters) <= 64  # the entries of waiters served through a are dropped, in bulk
    assert fleet.queued("b") == 0


async def test_a_waiter_that_takes_another_deployment_passes_the_wake_up_on() -> None:
    x, y = cold("x"), cold("y")
    fleet = Fleet([x, y], PATIENT)
    await fleet.acquire([t("x")], far(), None)
    await fleet.acquire([t("y")], far(), None)
    first = waiting(fleet, [t("y"), t("x")])
    await until(lambda: fleet.queued("x") == 1)
    second = waiting(fleet, [t("x")])
    await until(lambda: fleet.queued("x") == 2 and fleet.queued("y") == 1)
    fleet.release(x)  # wakes `first` (first in x's queue)...
    fleet.release(y)  # ...which then prefers y: x's slot must reach `second`
    assert await served(first) == t("y")
    assert await served(second) == t("x")


async def test_a_panic_waiter_is_woken_by_a_release_on_an_ejected_deployment() -> None:
    x, y = cold("x"), cold("y")
    fleet = Fleet([x, y], PATIENT)
    await fleet.acquire([t("x")], far(), None)
    await fleet.acquire([t("y")], far(), None)
    eject(x)
    mixed = waiting(fleet, [t("x"), t("y")])  # y is routable: no panic, so not queued on x
    panicking = waiting(fleet, [t("x")])  # only x: panic mode
    await until(lambda: fleet.queued("x") == 1 and fleet.queued("y") == 1)
    fleet.release(x)
    assert await served(panicking) == t("x")
    assert not mixed.done()
    mixed.cancel()


async def test_waiters_declining_a_cold_slot_do_not_bounce_wake_ups_during_warm_wait() -> None:
    hot, fresh = warm("hot", in_flight=1), cold("fresh", in_flight=1)
    fleet = Fleet([hot, fresh], cfg(queue_timeout=QUEUE_TIMEOUT, warm_wait=1.0))
    waiters = [waiting(fleet, [t("hot"), t("fresh")]) for _ in range(2)]
    await until(lambda: fleet.queued("hot") == 2)
    assert fleet.queued("fresh") == 0  # during warm_wait they decline the cold one: not queued there
    fleet.release(fresh)  # a cold slot frees while both wait for the warm one
    assert fleet.wakeups == 0 and not any(w.done() for w in waiters)
    done, _ = await asyncio.wait(waiters, timeout=QUEUE_TIMEOUT / 2, return_when=asyncio.FIRST_COMPLETED)
    assert [w.result() for w in done] == [t("fresh")]  # warm_wait over: one takes the cold slot
    fleet.release(hot)  # and the other gets the warm one
    got = await asyncio.wait_for(asyncio.gather(*waiters), PROMPT)
    assert sorted(x.provider for x in got if x) == ["fresh", "hot"]


async def test_a_waiter_notices_an_ejection_ending_without_any_release() -> None:
    x = cold("x")
    fleet = Fleet([x], PATIENT)
    y = cold("y")
    fleet.states["y"] = y
    await fleet.acquire([t("y")], far(), None)  # y full; x ejected briefly, no release will come
    x.ejected_until = time.monotonic() + 0.05
    x.ejections, x.consecutive_failures = 1, 1
    waiter = waiting(fleet, [t("y"), t("x")])
    await until(lambda: fleet.queued("y") == 1)  # it waits (x is ejected, y is full)...
    assert await served(waiter) == t("x")  # ...and takes x, whose ejection ended
    assert fleet.wakeups == 0  # no release woke it
