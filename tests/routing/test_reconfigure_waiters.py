"""A live reconfiguration keeps the requests waiting for a slot and the in-flight counts.

``Gateway.reconfigure`` builds a new fleet (and engine) that shares the deployment states of
the providers whose settings did not change. Requests already waiting stay in their old
fleet's ``acquire``, requests in flight release through the engine they started on, and new
requests use the new fleet: a slot freed through either fleet must reach the first waiter of
that deployment, whichever fleet it queued through, in order and at once (not at its queue
timeout). Waits are bounded well below the queue timeout (10 s) and checked to have got a slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from corral.config.schema import Config
from corral.core.call import Target
from corral.gateway import Gateway
from corral.routing.fleet import Fleet
from tests.support.gateway import make_config

QUEUE_TIMEOUT = 10.0
PROMPT = 2.0  # generous for "at once", far below the queue timeout
# a waiter re-checks when warm_wait ends: as long as the queue timeout, so only a wake-up serves it
WARM_WAIT = QUEUE_TIMEOUT
SLOT = [Target("one", "m")]


def config(other_weight: float = 1.0) -> Config:
    return make_config(
        {
            "providers": [
                {"name": "one", "type": "ollama", "base_url": "http://127.0.0.1:9", "max_parallel": 1},
                {"name": "other", "type": "ollama", "base_url": "http://127.0.0.1:9", "weight": other_weight},
            ],
            "router": {"queue_timeout": QUEUE_TIMEOUT, "warm_wait": WARM_WAIT},
        }
    )


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway.create(config())  # not started: no health checks or discovery go out
    yield gw
    await gw.close()


def deadline() -> float:
    return time.monotonic() + 60.0


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition on the fleet's own state (not for a length of time)."""
    async with asyncio.timeout(PROMPT):
        while not predicate():
            await asyncio.sleep(0)


def queue(fleet: Fleet) -> asyncio.Task[Target | None]:
    return asyncio.create_task(fleet.acquire(SLOT, deadline(), None))


async def got_slot(waiter: asyncio.Task[Target | None]) -> None:
    """The waiter got the slot promptly: not at its queue timeout, and not None (a timeout)."""
    try:
        result = await asyncio.wait_for(waiter, PROMPT)
    except TimeoutError:
        pytest.fail(f"the freed slot did not reach the waiter within {PROMPT:g} s")
    assert result == SLOT[0], "the waiter timed out instead of getting the freed slot"


async def test_a_waiter_from_before_the_swap_gets_a_slot_freed_through_the_new_fleet(
    gateway: Gateway,
) -> None:
    old = gateway.fleet
    assert await old.acquire(SLOT, deadline(), None) == SLOT[0]  # the one slot is taken
    waiter = queue(old)
    await until(lambda: old.queued("one") == 1)
    await gateway.reconfigure(config(other_weight=3.0))  # another provider's weight changes
    new = gateway.fleet
    assert new is not old and new.states["one"] is old.states["one"]  # "one" is unchanged: shared
    state = new.states["one"]
    assert state.in_flight == 1
    new.release(state)  # freed through the fleet in charge now
    await got_slot(waiter)
    assert state.in_flight == 1  # the waiter holds it now
    old.release(state)  # and it leaves through the fleet it came in by
    assert state.in_flight == 0 and new.queued("one") == 0


async def test_a_waiter_from_after_the_swap_gets_a_slot_freed_by_a_request_from_before(
    gateway: Gateway,
) -> None:
    old = gateway.fleet
    assert await old.acquire(SLOT, deadline(), None) == SLOT[0]  # in flight on the old engine
    await gateway.reconfigure(config(other_weight=3.0))
    new = gateway.fleet
    waiter = queue(new)
    await until(lambda: new.queued("one") == 1)
    old.release(old.states["one"])  # the old request finishes, on the engine it started on
    await got_slot(waiter)
    assert new.states["one"].in_flight == 1


async def test_waiters_across_the_swap_are_served_in_order(gateway: Gateway) -> None:
    old = gateway.fleet
    state = old.states["one"]
    assert await old.acquire(SLOT, deadline(), None) == SLOT[0]
    first = queue(old)
    await until(lambda: old.queued("one") == 1)
    await gateway.reconfigure(config(other_weight=3.0))
    new = gateway.fleet
    second = queue(new)
    await until(lambda: new.queued("one") == 2)
    old.release(state)  # the request from before the swap ends: the first in line gets it
    await got_slot(first)
    assert not second.done() and new.queued("one") == 1
    old.release(state)  # `first` ends (it came in through the old fleet): `second` gets it
    await got_slot(second)
    assert state.in_flight == 1
    new.release(state)
    assert state.in_flight == 0 and old.queued("one") == new.queued("one") == 0


async def test_two_swaps_in_a_row_keep_the_waiter(gateway: Gateway) -> None:
    first_fleet = gateway.fleet
    assert await first_fleet.acquire(SLOT, deadline(), None) == SLOT[0]
    waiter = queue(first_fleet)
    await until(lambda: first_fleet.queued("one") == 1)
    await gateway.reconfigure(config(other_weight=2.0))
    await gateway.reconfigure(config(other_weight=5.0))
    gateway.fleet.release(gateway.fleet.states["one"])
    await got_slot(waiter)


async def test_a_replaced_provider_starts_with_its_own_state_and_queue(gateway: Gateway) -> None:
    old = gateway.fleet
    assert await old.acquire(SLOT, deadline(), None) == SLOT[0]
    waiter = queue(old)  # waits for the old "one", which keeps serving what it has
    await until(lambda: old.queued("one") == 1)
    changed = make_config(
        {
            "providers": [
                {"name": "one", "type": "ollama", "base_url": "http://127.0.0.1:9", "max_parallel": 2},
                {"name": "other", "type": "ollama", "base_url": "http://127.0.0.1:9"},
            ],
            "router": {"queue_timeout": QUEUE_TIMEOUT, "warm_wait": WARM_WAIT},
        }
    )
    await gateway.reconfigure(changed)
    new = gateway.fleet
    assert new.states["one"] is not old.states["one"]
    assert new.states["one"].in_flight == 0 and new.queued("one") == 0
    old.release(old.states["one"])  # the old deployment's request ends: its waiter gets the slot
    await got_slot(waiter)
    assert old.states["one"].in_flight == 1 and new.states["one"].in_flight == 0
    old.release(old.states["one"])


async def test_the_retry_budget_keeps_counting_the_requests_in_flight(gateway: Gateway) -> None:
    budget = gateway.fleet.budget
    budget.active, budget.retrying = 4, 1  # requests on the old engine, one of them a retry
    changed = make_config(
        {
            "providers": [
                {"name": "one", "type": "ollama", "base_url": "http://127.0.0.1:9", "max_parallel": 1},
                {"name": "other", "type": "ollama", "base_url": "http://127.0.0.1:9"},
            ],
            "router": {"retry_budget_percent": 50, "retry_budget_min": 1},
        }
    )
    await gateway.reconfigure(changed)
    assert gateway.fleet.budget is budget  # they finish on the old engine and count down this one
    assert (budget.active, budget.retrying, budget.percent, budget.minimum) == (4, 1, 50.0, 1)
    assert budget.allow()  # 50 % of 4 in flight: 2 retries at once, 1 running
