"""In-flight slots across the fleet: ``max_parallel`` of an instance held by all workers together.

Per deployment a sorted set ``<prefix>:cluster:slots:<name>`` holds one member per request in
flight anywhere, scored by its lease's expiry (Unix time). ``take`` is one script: drop
expired members, refuse if the set is full, else add ours; the takes of one loop iteration go
in one script call (one round trip for all the requests a busy worker read at once). ``give`` is one script
in the background: remove our member and, only if the set was full (someone may be waiting),
publish a release so the workers wake one local waiter each (``Fleet``'s queues); the gives
of one loop iteration go in one script call, so a busy worker makes one round trip for many. A
background task renews this worker's leases every ``ttl / 3`` s in one pipeline, so a crashed
worker's slots come back within ``ttl`` (6 s) and a long stream keeps its slot.

A member is not tied to a request: this worker's members for one deployment are
interchangeable, so ``give`` returns any one of them. When Redis cannot be reached ``take``
fails open (the local ``max_parallel`` check still holds) and that slot is held only locally.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from corral.cluster.link import RedisLink

TTL = 6.0

TAKE = """
local out = {}
for i = 1, #KEYS do
  local a = (i - 1) * 3
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[a + 3]) then
    out[i] = 0
  else
    redis.call('ZADD', KEYS[i], ARGV[a + 4], ARGV[a + 5])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    out[i] = 1
  end
end
return out
"""

GIVE = """
for i = 2, #KEYS do
  local a = (i - 2) * 3
  local full = redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[a + 2])
  if redis.call('ZREM', KEYS[i], ARGV[a + 1]) == 1 and full then
    redis.call('PUBLISH', KEYS[1], ARGV[a + 3])
  end
end
return 0
"""


class SharedSlots:
    def __init__(self, link: RedisLink, *, ttl: float = TTL, clock: Callable[[], float] = time.time) -> None:
        self._link = link
        self._ttl = ttl
        self._clock = clock
        self._take = link.redis.register_script(TAKE)
        self._give = link.redis.register_script(GIVE)
        self._members = itertools.count(1)
        self._held: dict[str, list[str | None]] = {}  # None: a slot taken while Redis was down
        self._tasks: set[asyncio.Task[None]] = set()
        self._giving: list[tuple[str, int, str]] = []  # (name, cap, member) for the next pipeline
        # (name, cap, member, its answer: 1 taken, 0 full, None Redis unreachable) for the next call
        self._taking: list[tuple[str, int, str, asyncio.Future[int | None]]] = []
        self.on_release: Callable[[str], None] | None = None  # a slot freed anywhere (wake a waiter)
        self.taken = 0
        self.refused = 0
        self.fail_open = 0
        link.on("s", self._released)

    def key(self, name: str) -> str:
        return self._link.key("slots", name)

    def held(self, name: str) -> int:
        return sum(1 for m in self._held.get(name, ()) if m is not None)

    async def take(self, name: str, cap: int) -> bool:
        """One slot of ``name`` (``cap`` in total across the fleet); False when all are taken."""
        member = f"{self._link.origin}:{next(self._members)}"
        answer: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        if not self._taking:
            self._spawn(self._take_batch())
        self._taking.append((name, cap, member, answer))
        ok = await answer
        if ok is None:  # Redis unreachable: fail open, the local cap still holds
            self.fail_open += 1
            self._held.setdefault(name, []).append(None)
            return True
        if ok == 0:
            self.refused += 1
            return False
        self.taken += 1
        self._held.setdefault(name, []).append(member)
        return True

    async def _take_batch(self) -> None:
        await asyncio.sleep(0)  # the other takes of this loop iteration join the script call
        takes, self._taking = self._taking, []
        now = self._clock()
        keys = [self.key(name) for name, _, _, _ in takes]
        args: list[Any] = [repr(now), int(self._ttl * 2000)]
        for _, cap, member, _ in takes:
            args += (cap, repr(now + self._ttl), member)
        results: list[Any] | None = None
        try:
            got = await self._link.run(lambda: self._take(keys=keys, args=args))
            if isinstance(got, list) and len(got) == len(takes):
                results = got
        finally:  # answered, or cancelled at shutdown: no taker waits for ever
            for i, (_, _, _, answer) in enumerate(takes):
                if not answer.done():
                    answer.set_result(None if results is None else int(results[i]))

    def give(self, name: str, cap: int) -> None:
        """Give one of this worker's slots of ``name`` back (in the background)."""
        held = self._held.get(name)
        if not held:
            return
        member = held.pop()
        if member is not None:
            if not self._giving:
                self._spawn(self._give_back())
            self._giving.append((name, cap, member))

    async def _give_back(self) -> None:
        await asyncio.sleep(0)  # the other gives of this loop iteration join the pipeline
        gives, self._giving = self._giving, []

        keys: list[str] = [self._link.channel]
        args: list[Any] = []
        for name, cap, member in gives:
            keys.append(self.key(name))
            args += (member, cap, self._link.message("s", d=name))
        await self._link.run(lambda: self._give(keys=keys, args=args))

    def _released(self, msg: dict[str, Any]) -> None:
        if self.on_release is not None:
            self.on_release(str(msg.get("d")))

    async def renew(self) -> None:
        """Push this worker's leases ``ttl`` into the future (one pipeline)."""
        expiry = self._clock() + self._ttl
        held = {name: [m for m in members if m is not None] for name, members in self._held.items()}
        held = {name: members for name, members in held.items() if members}
        if not held:
            return

        async def send() -> None:
            async with self._link.redis.pipeline(transaction=False) as pipe:
                for name, members in held.items():
                    pipe.zadd(self.key(name), dict.fromkeys(members, expiry), xx=True)
                    pipe.pexpire(self.key(name), int(self._ttl * 2000))
                await pipe.execute()

        await self._link.run(send)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            await self.renew()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
