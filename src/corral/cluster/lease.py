"""The probe lease: one worker of the whole fleet runs active health checks and discovery.

The lease is one Redis key, ``<prefix>:cluster:lease``, holding the holder's worker id with a
TTL (``ttl``, 3 s). Every ``tick`` (1 s) each worker runs one script that renews the lease if
it holds it, or takes it if it is free (``SET NX PX``): a holder that dies stops renewing and
another worker takes over within ``ttl + tick`` seconds. The holder probes and discovers and
publishes the results (``corral.cluster.health``, ``corral.cluster.catalog``); the others apply
them. While Redis cannot be reached every worker leads itself (probes on its own, as without
Redis), and the lease is taken again when Redis is back.
"""

from __future__ import annotations

import time

from corral.cluster.link import RedisLink

TTL = 3.0
TICK = 1.0

TAKE_OR_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class ProbeLease:
    def __init__(self, link: RedisLink, *, ttl: float = TTL) -> None:
        self._link = link
        self._ttl = ttl
        self.key = link.key("lease")
        self._script = link.redis.register_script(TAKE_OR_RENEW)
        self._held_until = 0.0  # monotonic: the lease is ours until then (a margin under its TTL)
        self.elections = 0  # times this worker took the lease

    def leading(self) -> bool:
        """True while this worker holds the lease, or while Redis is unreachable (local probes)."""
        if self._link.degraded:
            return True
        return time.monotonic() < self._held_until

    async def tick(self) -> None:
        started = time.monotonic()
        held = await self._link.run(
            lambda: self._script(keys=[self.key], args=[self._link.origin, int(self._ttl * 1000)])
        )
        if held is None:
            return  # Redis error: ``leading`` follows the link's degraded state
        if held == 1:
            if started >= self._held_until:
                self.elections += 1
            self._held_until = started + self._ttl * 0.8
        else:
            self._held_until = 0.0

    async def release(self) -> None:
        """Give the lease up at shutdown so another worker takes it at its next tick."""
        release = (
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
        )
        await self._link.run(lambda: self._link.redis.eval(release, 1, self.key, self._link.origin))
        self._held_until = 0.0
