"""Per-key and per-user limits: rpm, tpm, max_parallel and a spend budget per period.

``make_limiter`` picks the implementation: ``RedisLimiter`` (shared by every replica) when a
Redis URL is configured, else ``InProcessLimiter``. The request path calls
``admit(subject, limits, estimated_tokens=...)`` (or ``admit_many`` for the key and its user in
one step) and ``await lease.done(tokens=..., cost=...)`` when the request ends.
"""

from __future__ import annotations

from corral.limits.base import (
    LIMIT_NAMES,
    NO_LIMITS,
    Lease,
    Limiter,
    LimiterStats,
    Limits,
    LimitsUnavailable,
    RateLimited,
)
from corral.limits.memory import InProcessLimiter
from corral.limits.unshared import UnsharedLimiter
from corral.limits.windows import Period, parse_period


def make_limiter(redis_url: str | None, prefix: str, *, fail_open: bool = True, workers: int = 1) -> Limiter:
    """A ``RedisLimiter`` on ``redis_url`` when it is set, else an ``InProcessLimiter`` (one of
    several ``workers`` without Redis: wrapped so that limits fail closed, ``UnsharedLimiter``).
    Creating a ``RedisLimiter`` does no I/O; it connects on the first admit."""
    if redis_url:
        from corral.limits.redis_limiter import RedisLimiter  # redis is loaded only when used

        return RedisLimiter(redis_url, prefix, fail_open=fail_open)
    if workers > 1:
        return UnsharedLimiter(InProcessLimiter(), workers)
    return InProcessLimiter()


__all__ = [
    "LIMIT_NAMES",
    "NO_LIMITS",
    "InProcessLimiter",
    "Lease",
    "Limiter",
    "LimiterStats",
    "Limits",
    "LimitsUnavailable",
    "Period",
    "RateLimited",
    "make_limiter",
    "parse_period",
]
