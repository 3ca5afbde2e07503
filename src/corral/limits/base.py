"""The limiter contract: ``Limits`` (a key's or a user's rpm, tpm, max_parallel, max_budget and
budget_period, LiteLLM's names), the ``Limiter`` protocol, the ``Lease`` it hands out, and the
``RateLimited`` error (HTTP 429 with a retry-after).

A limit that is ``None`` is not enforced; a limit of 0 refuses every request. ``max_budget``
without ``budget_period`` is a monthly budget (see ``windows.DEFAULT_PERIOD``). A request is
admitted while the spend of the current period is below ``max_budget``; the spend of a request
is only known when it ends, so the last admitted request may take the spend past the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from corral.errors import CorralError, InvalidRequest
from corral.limits.windows import DEFAULT_PERIOD, Period, parse_period

LIMIT_NAMES = ("rpm", "tpm", "max_parallel", "max_budget")
_SCOPES = {"key": "This key", "user": "The user who owns this key", "team": "This key's team"}


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    max_budget: float | None = None
    budget_period: str | None = None
    period: Period | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_budget is not None:
            object.__setattr__(self, "period", parse_period(self.budget_period or DEFAULT_PERIOD))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Limits:
        """Read a key's ``limits`` mapping; unknown names are ignored, bad values refused."""
        if not m:
            return NO_LIMITS
        return cls(
            rpm=_number(m, "rpm", int),
            tpm=_number(m, "tpm", int),
            max_parallel=_number(m, "max_parallel", int),
            max_budget=_number(m, "max_budget", float),
            budget_period=_text(m, "budget_period"),
        )

    @property
    def empty(self) -> bool:
        """No limit is set: admitting costs nothing."""
        return self.rpm is None and self.tpm is None and self.max_parallel is None and self.max_budget is None


NO_LIMITS = Limits()


def _number(m: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    value = m.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidRequest(
            f"This key's limit '{name}' is {value!r}, not a non-negative number; ask an admin to fix it.",
            param=f"limits.{name}",
        )
    if kind is int and not float(value).is_integer():  # rpm 2.5 is not silently 2
        raise InvalidRequest(
            f"This key's limit '{name}' is {value!r}, not a whole number; ask an admin to fix it.",
            param=f"limits.{name}",
        )
    return kind(value)


def _text(m: Mapping[str, Any], name: str) -> str | None:
    value = m.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest(f"This key's limit '{name}' must be a string; ask an admin to fix it.")


class RateLimited(CorralError):
    """A limit was hit: HTTP 429 with ``Retry-After: <retry_after, rounded up>``."""

    status: ClassVar[int] = 429
    error_type: ClassVar[str] = "rate_limit_error"

    def __init__(self, subject: str, limit: str, value: float, retry_after: float, period: str = "") -> None:
        self.scope = subject.partition(":")[0] if ":" in subject else "caller"
        self.limit = limit
        self.retry_after = max(1, math.ceil(retry_after))
        who = _SCOPES.get(self.scope, "This caller")
        super().__init__(
            f"{who} is over its {_describe(limit, value, period)}; retry in "
            f"{_duration(self.retry_after)} or ask an admin to raise {limit}.",
            code="budget_exceeded" if limit == "max_budget" else "rate_limit_exceeded",
        )

    @property
    def headers(self) -> dict[str, str]:
        """The headers the answer must carry."""
        return {"Retry-After": str(self.retry_after)}


class LimitsUnavailable(CorralError):
    """The shared limit store (Redis) cannot be reached and the limiter fails closed: 503."""

    status: ClassVar[int] = 503
    error_type: ClassVar[str] = "server_error"


def _describe(limit: str, value: float, period: str) -> str:
    if limit == "rpm":
        return f"rpm limit ({value:g} requests per minute)"
    if limit == "tpm":
        return f"tpm limit ({value:g} tokens per minute)"
    if limit == "max_parallel":
        return f"max_parallel limit ({value:g} requests at once)"
    return f"max_budget ({value:g} per {period or DEFAULT_PERIOD} period)"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{math.ceil(seconds / 60)} min"
    if seconds < 172800:
        return f"{math.ceil(seconds / 3600)} h"
    return f"{math.ceil(seconds / 86400)} days"


class Lease:
    """What ``admit`` returns. ``done`` records the real tokens (tpm) and the spend (budget) and
    frees the parallel slot; it is idempotent and never raises (a failure is logged)."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = False

    async def done(self, *, tokens: int, cost: float) -> None:
        if self._done:
            return
        self._done = True
        await self._finish(tokens, cost)

    async def _finish(self, tokens: int, cost: float) -> None:
        """Subclasses release what they hold here (called at most once)."""


@dataclass(slots=True)
class LimiterStats:
    """Counters for ``Metrics.set_limiter``: refusals by (scope, limit), admits let through
    because the shared store was unreachable (fail-open), and store errors."""

    rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    fail_open: int = 0
    errors: int = 0

    def reject(self, error: RateLimited) -> None:
        key = (error.scope, error.limit)
        self.rejected[key] = self.rejected.get(key, 0) + 1


class Limiter(Protocol):
    stats: LimiterStats

    async def admit(self, subject: str, limits: Limits, *, estimated_tokens: int) -> Lease:
        """Admit one request for ``subject`` ("key:<id>", "user:<owner>") or raise RateLimited."""
        ...

    async def admit_many(self, checks: Sequence[tuple[str, Limits]], *, estimated_tokens: int) -> Lease:
        """Admit one request against several subjects at once, all or nothing: a refusal by
        any of them takes nothing from the others. One lease covers them all."""
        ...

    async def seed_spend(self, subject: str, limits: Limits, spent: float) -> bool:
        """Raise the current period's recorded spend to at least ``spent`` (e.g. from the usage
        store at start, so a restart does not reset budgets). False if the limiter's store did
        not take it (it fails open: it does not raise)."""
        ...

    async def close(self) -> None: ...
