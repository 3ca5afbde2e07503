"""Pins shared through Redis fail open: with Redis unreachable the pins keep working in this
process, the errors are counted, and the request path never waits for Redis."""

from __future__ import annotations

import asyncio
import time

from corral.routing.affinity import Affinity, Pins, SharedPins
from tests.support.servers import free_port


async def test_an_unreachable_redis_leaves_the_pins_local_and_counts_errors() -> None:
    pins = Pins(100, 60.0)
    shared = SharedPins(pins, f"redis://127.0.0.1:{free_port()}/0", "corral-test-down", timeout=0.2)
    shared.start()
    affinity = Affinity(pins, wait=1.0)
    try:
        started = time.perf_counter()
        assert affinity.record("conversation", "gpu1") == "miss"  # written behind: returns at once
        assert affinity.pinned("other", []) is None  # a lookup is queued, not awaited
        assert time.perf_counter() - started < 0.05
        assert affinity.record("conversation", "gpu1") == "hit"
        async with asyncio.timeout(5):
            while pins.stats.shared_errors == 0:  # the writer's first failed round trip
                await asyncio.sleep(0.01)
        assert pins.peek("conversation") == "gpu1"
    finally:
        await shared.close()
