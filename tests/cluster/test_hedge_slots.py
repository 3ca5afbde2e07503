"""A hedge's second attempt on a deployment whose ``max_parallel`` is counted fleet-wide
(``Fleet.try_acquire``): it takes the fleet-wide slot with one round trip when one is free,
and passes over a deployment the fleet holds full at once, never waiting for a release.

Two fleets on two Redis links of one key prefix stand for two workers (their own connections,
their own local states), on a real Redis (CORRAL_TEST_REDIS_URL or 127.0.0.1:6379).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from corral.cluster.link import RedisLink
from corral.cluster.slots import SharedSlots
from corral.config.schema import RouterConfig
from corral.conversation.call import Target
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState
from tests.cluster.harness import own_prefix, redis_url

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]
ROUND_TRIP = 1.0  # s: far above one round trip to a local Redis, far below any wait for a release


def worker(link: RedisLink) -> Fleet:
    """One worker's fleet: gpu (max_parallel 1, counted fleet-wide) and cpu (no cap)."""
    fleet = Fleet(
        [DeploymentState("gpu", "ollama", max_parallel=1), DeploymentState("cpu", "ollama")], RouterConfig()
    )
    fleet.shared = SharedSlots(link)
    return fleet


@pytest.fixture
async def workers() -> AsyncIterator[tuple[Fleet, Fleet]]:
    url = redis_url()
    with own_prefix(url) as prefix:
        links = [RedisLink(url, prefix, origin) for origin in ("a", "b")]
        try:
            yield worker(links[0]), worker(links[1])
        finally:
            for link in links:
                await link.close()


async def test_a_hedge_takes_a_free_fleet_counted_slot_and_passes_over_a_full_one(
    workers: tuple[Fleet, Fleet],
) -> None:
    a, b = workers
    gpu, cpu = Target("gpu", "llama3.2"), Target("cpu", "llama3.2")
    assert await a.try_acquire([gpu, cpu]) == (gpu, False)  # a holds gpu's only slot, fleet-wide
    assert a.states["gpu"].in_flight == 1

    started = time.monotonic()
    assert await b.try_acquire([gpu]) is None  # full elsewhere: refused, not waited for
    assert await b.try_acquire([gpu, cpu]) == (cpu, False)  # the next candidate instead
    assert time.monotonic() - started < ROUND_TRIP
    assert b.states["gpu"].in_flight == 0  # the local slot it tried is given back

    a.release(a.states["gpu"])  # given back in the background; b rechecks after FLEET_FULL_RECHECK
    deadline = time.monotonic() + 5
    while (taken := await b.try_acquire([gpu])) is None:
        assert time.monotonic() < deadline, "b never took the slot a gave back"
        await asyncio.sleep(0.01)  # the poll's pace
    assert taken == (gpu, False)
    assert await asyncio.wait_for(a.try_acquire([gpu]), ROUND_TRIP) is None  # now b holds it
