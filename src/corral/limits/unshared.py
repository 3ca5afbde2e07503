"""The limiter of one worker among several with nothing shared: it refuses to count limits.

``corral serve --workers N`` without ``redis_url`` gives every worker its own in-process
limiter, so a key's rpm, tpm, max_parallel or budget would be counted N times over. Rather than
let a limit through N-fold, ``UnsharedLimiter`` answers every request of a subject that has a
limit with 503 and a message naming the fix (set ``redis_url``, or serve with one worker);
subjects without limits pass untouched, through the wrapped in-process limiter.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.limits.base import Lease, Limiter, LimiterStats, Limits, LimitsUnavailable

FIX = (
    "this key (or its user) has limits, and this gateway runs {workers} worker processes without "
    "a shared store, so each would count them apart. Set redis_url (the limits are then shared by "
    "every worker) or serve with --workers 1."
)


class UnsharedLimiter:
    """Wrap a process-local limiter for one of ``workers`` workers: limits fail closed."""

    def __init__(self, inner: Limiter, workers: int) -> None:
        self._inner = inner
        self._message = FIX.format(workers=workers)
        self.stats: LimiterStats = inner.stats

    def _check(self, checks: Sequence[tuple[str, Limits]]) -> None:
        if any(not limits.empty for _, limits in checks):
            self.stats.errors += 1
            raise LimitsUnavailable(self._message)

    async def admit(self, subject: str, limits: Limits, *, estimated_tokens: int) -> Lease:
        self._check(((subject, limits),))
        return await self._inner.admit(subject, limits, estimated_tokens=estimated_tokens)

    async def admit_many(self, checks: Sequence[tuple[str, Limits]], *, estimated_tokens: int) -> Lease:
        self._check(checks)
        return await self._inner.admit_many(checks, estimated_tokens=estimated_tokens)

    async def seed_spend(self, subject: str, limits: Limits, spent: float) -> bool:
        return await self._inner.seed_spend(subject, limits, spent)

    async def close(self) -> None:
        await self._inner.close()
