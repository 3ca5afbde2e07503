"""The cluster's parts on a real Redis (CORRAL_TEST_REDIS_URL or 127.0.0.1:6379), each test on
a key prefix of its own: the probe lease's election and re-election, fleet-wide slots (taken,
refused, given back with a wake-up, a crashed worker's slots expiring), health snapshots,
the catalog and model facts.
Several links in one process stand for several workers: each has its own connections; the
catalog share reads a stand-in of the gateway's parts it touches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from corral.cluster.catalog import CatalogShare
from corral.cluster.health import apply, snapshot
from corral.cluster.lease import ProbeLease
from corral.cluster.link import RedisLink
from corral.cluster.slots import SharedSlots
from corral.config.schema import RouterConfig
from corral.conversation.call import ModelInfo
from corral.core.catalog import Catalog, ProviderEntry
from corral.core.discovery import ProviderStatus
from corral.routing.capabilities import ModelFacts
from corral.routing.state import DeploymentState
from tests.cluster.harness import own_prefix, redis_url

pytestmark = pytest.mark.redis


@pytest.fixture
async def links() -> AsyncIterator[Callable[[str], RedisLink]]:
    url = redis_url()
    made: list[RedisLink] = []
    with own_prefix(url) as prefix:

        def make(origin: str) -> RedisLink:
            link = RedisLink(url, prefix, origin)
            made.append(link)
            return link

        try:
            yield make
        finally:
            for link in made:
                await link.close()


async def eventually(condition: Callable[[], Any], deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:g} s: {what}")
        await asyncio.sleep(0.01)  # the poll's pace


async def test_one_lease_holder_and_another_takes_over_when_it_stops_renewing(
    links: Callable[[str], RedisLink],
) -> None:
    first, second = ProbeLease(links("w1"), ttl=0.6), ProbeLease(links("w2"), ttl=0.6)
    await first.tick()
    await second.tick()
    assert first.leading() and not second.leading()
    await first.tick()  # renewing keeps it
    await second.tick()
    assert first.leading() and not second.leading()
    died = time.monotonic()  # the holder stops renewing (a crash): the other ticks on
    while not second.leading():
        assert time.monotonic() - died < 2.0, "not re-elected within 2 s of a 0.6 s lease"
        await asyncio.sleep(0.1)  # the other worker's tick
        await second.tick()
    assert second.elections == 1
    await second.release()  # a clean shutdown hands it over at the next tick
    await first.tick()
    assert first.leading()


async def test_fleet_wide_slots_refuse_past_the_cap_and_a_release_wakes_the_others(
    links: Callable[[str], RedisLink],
) -> None:
    link_a, link_b = links("a"), links("b")
    a, b = SharedSlots(link_a), SharedSlots(link_b)
    freed: list[str] = []
    b.on_release = freed.append
    listener = asyncio.create_task(link_b.listen())
    try:
        await asyncio.wait_for(link_b.subscribed.wait(), 2)
        assert await a.take("x", 2) and await b.take("x", 2)
        assert not await a.take("x", 2) and not await b.take("x", 2)  # 2 in flight in total
        assert await a.take("y", 2)  # per deployment
        a.give("x", 2)
        await a.drain()
        await eventually(lambda: freed == ["x"], 1.0, "the release announced to the other worker")
        assert await b.take("x", 2) and not await a.take("x", 2)
        a.give("y", 2)  # y was not full: nobody can be waiting, nothing announced
        await a.drain()
        b.give("x", 2)
        await b.drain()
        await eventually(lambda: freed == ["x", "x"], 1.0, "b's own release reaches it too")
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_the_takes_of_one_loop_iteration_are_one_round_trip_and_keep_the_cap(
    links: Callable[[str], RedisLink],
) -> None:
    link = links("a")
    slots = SharedSlots(link)
    calls = 0
    run = link.run

    async def counted(op: Callable[[], Any]) -> Any:
        nonlocal calls
        calls += 1
        return await run(op)

    link.run = counted  # type: ignore[method-assign]
    got = await asyncio.gather(
        *(slots.take("x", 3) for _ in range(5)), slots.take("y", 1), slots.take("y", 1)
    )
    assert got == [True, True, True, False, False, True, False]  # in order, per deployment
    assert calls == 1 and slots.held("x") == 3 and slots.held("y") == 1
    assert (slots.taken, slots.refused) == (4, 3)
    assert await SharedSlots(links("b")).take("x", 3) is False  # the other worker sees them held
    for _ in range(3):
        slots.give("x", 3)
    await slots.drain()
    assert await SharedSlots(links("c")).take("x", 3) is True


async def test_a_crashed_workers_slots_come_back_when_their_leases_expire(
    links: Callable[[str], RedisLink],
) -> None:
    crashed, alive = SharedSlots(links("crashed"), ttl=0.5), SharedSlots(links("alive"), ttl=0.5)
    assert await crashed.take("x", 2) and await crashed.take("x", 2)
    assert not await alive.take("x", 2)
    await alive.take("y", 1)
    gone = time.monotonic()
    while not await alive.take("x", 2):  # the crashed worker never gives back nor renews
        assert time.monotonic() - gone < 2.0
        await asyncio.sleep(0.05)  # the retry's pace
        await alive.renew()  # the live worker's own leases are kept
    assert time.monotonic() - gone >= 0.4
    assert not await crashed.take("y", 1)  # alive renewed its y slot past its first TTL


def test_a_health_snapshot_carries_an_ejection_and_a_recovery_across_clocks() -> None:
    cfg = RouterConfig()
    here, there = DeploymentState("b", "ollama"), DeploymentState("b", "ollama")
    mono, wall = time.monotonic(), time.time()
    here.record_failure(mono, "connection refused", cfg, eject_now=True)
    snap = snapshot(here, mono, wall)
    assert snap["eu"] > wall and snap["x"] == 1
    apply(there, snap, 1000.0, wall)  # another process: another monotonic clock
    assert there.status(1000.0) == "ejected" and there.last_error == "connection refused"
    assert abs(there.ejected_until - 1000.0 - (here.ejected_until - mono)) < 0.01
    here.record_check(True, 1.0, None)  # a passing probe brings it back
    apply(there, snapshot(here, mono, wall), 1000.0, wall)
    assert there.status(1000.0) == "healthy" and there.last_check_ok is True


def test_transitions_tell_the_observer_and_plain_successes_do_not() -> None:
    told: list[str] = []
    state = DeploymentState("b", "ollama")
    state.observer = lambda s: told.append(s.status())
    state.record_success(5.0)
    assert told == []  # the hot path: nothing to share
    state.record_failure(time.monotonic(), "boom", RouterConfig(eject_after=1))
    state.record_busy(time.monotonic(), 1.0)
    state.record_success(5.0)  # after failures: a recovery
    assert len(told) == 3


def _gateway_parts(facts: ModelFacts) -> Any:
    """What CatalogShare reads of a gateway: discovery status, catalog, the engine's facts."""
    catalog = Catalog([ProviderEntry("a", "ollama")], [], ())
    discovery = SimpleNamespace(status={"a": ProviderStatus()}, first_round=asyncio.Event())
    return SimpleNamespace(
        catalog=catalog, discovery=discovery, engine=SimpleNamespace(fit=SimpleNamespace(facts=facts))
    )


async def test_the_lease_holders_catalog_and_model_facts_reach_a_worker_that_does_not_discover(
    links: Callable[[str], RedisLink],
) -> None:
    leader_gw, follower_gw = _gateway_parts(ModelFacts()), _gateway_parts(ModelFacts())
    leader_gw.catalog.update("a", [ModelInfo(id="qwen3:0.6b", owned_by="a")])
    leader_gw.discovery.status["a"] = ProviderStatus(checked_at=time.time(), ok=True, models=1)
    leader_gw.engine.fit.facts.learn("a", "qwen3:0.6b", ["completion", "tools"], 40960)
    leader_link, follower_link = links("leader"), links("follower")
    leader, follower = (
        CatalogShare(leader_link, lambda: leader_gw),
        CatalogShare(follower_link, lambda: follower_gw),
    )
    listener = asyncio.create_task(follower_link.listen())
    try:
        await asyncio.wait_for(follower_link.subscribed.wait(), 2)
        await leader.publish()
        await eventually(lambda: follower.applied == 1, 1.0, "the catalog applied by the follower")
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert [m.id for m in follower_gw.catalog.models_of("a")] == ["qwen3:0.6b"]
    assert follower_gw.discovery.first_round.is_set() and follower_gw.discovery.status["a"].ok
    learned = follower_gw.engine.fit.facts.of("a", "qwen3:0.6b")
    assert learned.capabilities == frozenset({"completion", "tools"}) and learned.context_length == 40960
    late = _gateway_parts(ModelFacts())  # a worker that starts later reads the stored copy
    await CatalogShare(links("late"), lambda: late).load()
    assert [m.id for m in late.catalog.models_of("a")] == ["qwen3:0.6b"]
