"""What the fleet-wide ``max_parallel`` costs a request: the Redis round trips of
``corral.cluster.slots`` (one ``take`` on the request path, one ``give`` in the background),
measured on a real Redis, one request at a time (the added latency) and ``--concurrency`` at
once (the CPU per request when the loop is busy). Keys go under a random prefix, deleted after.

    python bench/cluster_slots.py [--redis redis://127.0.0.1:6379/0] [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import uvloop

from corral.cluster.link import RedisLink
from corral.cluster.slots import SharedSlots


async def sequential(slots: SharedSlots, n: int) -> tuple[list[float], float]:
    takes: list[float] = []
    cpu = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        assert await slots.take("bench", 1_000_000)
        takes.append((time.perf_counter() - started) * 1e6)
        slots.give("bench", 1_000_000)
        await slots.drain()
    return takes, (time.process_time() - cpu) * 1e6 / n


async def concurrent(slots: SharedSlots, n: int, width: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await slots.take("bench", 1_000_000)
            slots.give("bench", 1_000_000)

    cpu = time.process_time()
    await asyncio.gather(*(worker(n // width) for _ in range(width)))
    await slots.drain()
    return (time.process_time() - cpu) * 1e6 / (n // width * width)


async def main(url: str, n: int, width: int) -> None:
    prefix = f"corral-bench-{secrets.token_hex(4)}"
    link = RedisLink(url, prefix, "bench")
    slots = SharedSlots(link)
    try:
        await sequential(slots, 200)  # warm up: scripts loaded, connection open
        cpu = time.process_time()
        for _ in range(n):
            await link.redis.ping()
        ping = (time.process_time() - cpu) * 1e6 / n
        takes, cpu_seq = await sequential(slots, n)
        cpu_conc = await concurrent(slots, n, width)
        print(
            f"take (request path, one at a time): p50 {statistics.median(takes):.0f} us, "
            f"p99 {statistics.quantiles(takes, n=100)[98]:.0f} us"
        )
        print(f"baseline: CPU of one redis-py PING round trip: {ping:.0f} us")
        print(f"CPU per request (take + give), one at a time: {cpu_seq:.0f} us")
        print(f"CPU per request (take + give), {width} at once: {cpu_conc:.0f} us")
        print(f"errors: {link.errors}, fail-open: {slots.fail_open}")
    finally:
        keys = [k async for k in link.redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await link.redis.delete(*keys)
        await link.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    uvloop.run(main(args.redis, args.requests, args.concurrency))
