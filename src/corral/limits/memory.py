"""The in-process limiter: limits held in this process's memory, for a single gateway replica.

No I/O and no await between the check and the take, so an admit is atomic on the event loop.
State per subject: two minute counters each for rpm and tpm (see ``windows``), the open leases
(each expires after ``lease_ttl`` seconds, so a lease that is never ``done()`` cannot hold a
parallel slot forever), and the spend of the current budget window. Subjects with nothing left
to remember are swept every few thousand admits. Spend lives only in memory: a restart starts
from zero until ``seed_spend`` is called with the spend from the usage store (the gateway's
``corral.accounting.budgets.BudgetSeeder`` does that in the background at start).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from corral.limits.base import Lease, LimiterStats, Limits, RateLimited
from corral.limits.windows import Period, minute_of, over, wait_time

LEASE_TTL = 600.0  # seconds a lease holds its parallel slot when done() never comes
SWEEP_EVERY = 4096  # admits between sweeps of idle subjects


@dataclass(slots=True)
class _Minute:
    """The sliding-minute pair of counters."""

    index: int = -2
    current: int = 0
    previous: int = 0

    def roll(self, index: int) -> None:
        if index != self.index:
            self.previous = self.current if index == self.index + 1 else 0
            self.current = 0
            self.index = index

    def correct(self, index: int, delta: int) -> None:
        """Apply ``delta`` to the minute ``index`` if it is still counted."""
        if index == self.index:
            self.current = max(0, self.current + delta)
        elif index == self.index - 1:
            self.previous = max(0, self.previous + delta)


@dataclass(slots=True)
class _Subject:
    requests: _Minute = field(default_factory=_Minute)
    tokens: _Minute = field(default_factory=_Minute)
    leases: OrderedDict[int, float] = field(default_factory=OrderedDict)  # lease id -> expiry, oldest first
    budget_period: Period | None = None
    budget_window: int | None = None
    budget_end: float = 0.0
    checked: float = 0.0  # the last time the budget window was computed
    spent: float = 0.0

    def roll_budget(self, limits: Limits, now: float) -> None:
        period = limits.period
        assert period is not None
        if period == self.budget_period and self.checked <= now < self.budget_end:
            return  # still inside the window computed last time
        window, end = period.window(now)
        if window != self.budget_window or period != self.budget_period:
            self.budget_window, self.budget_end, self.spent = window, end, 0.0
        self.budget_period, self.checked = period, now

    def open_leases(self, now: float) -> int:
        """Drop the expired leases (the oldest come first: one TTL for all) and count the rest."""
        leases = self.leases
        while leases and next(iter(leases.values())) <= now:
            leases.popitem(last=False)
        return len(leases)

    def idle(self, minute: int, now: float) -> bool:
        return (
            self.requests.index < minute - 1
            and self.tokens.index < minute - 1
            and not self.open_leases(now)
            and (self.spent == 0.0 or now >= self.budget_end)
        )


class InProcessLimiter:
    """Limits enforced in this process. ``clock`` returns UTC epoch seconds (tests move it)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, lease_ttl: float = LEASE_TTL) -> None:
        self._clock = clock
        self._lease_ttl = lease_ttl
        self._subjects: dict[str, _Subject] = {}
        self._ids = itertools.count(1)
        self._admits = 0
        self.stats = LimiterStats()

    async def admit(self, subject: str, limits: Limits, *, estimated_tokens: int) -> Lease:
        if limits.empty:
            return Lease()
        return self._admit(((subject, limits),), estimated_tokens)

    async def admit_many(self, checks: Sequence[tuple[str, Limits]], *, estimated_tokens: int) -> Lease:
        active = tuple(c for c in checks if not c[1].empty)
        return self._admit(active, estimated_tokens) if active else Lease()

    def _admit(self, checks: Sequence[tuple[str, Limits]], estimated: int) -> Lease:
        now = self._clock()
        minute, weight = minute_of(now)
        subjects = self._subjects
        for subject, limits in checks:
            state = subjects.get(subject) or self._state(subject)
            error = self._check(subject, limits, state, now, minute, weight, estimated)
            if error is not None:
                self.stats.reject(error)
                raise error
        lease_id = next(self._ids)
        for subject, limits in checks:  # every check passed: take from each
            state = subjects[subject]
            if limits.rpm is not None:
                state.requests.current += 1
            if limits.tpm is not None:
                state.tokens.current += estimated
            if limits.max_parallel is not None:
                state.leases[lease_id] = now + self._lease_ttl
        self._admits += 1
        if self._admits % SWEEP_EVERY == 0:
            self._sweep(minute, now)
        return _MemoryLease(self, lease_id, tuple(checks), minute, estimated)

    def _state(self, subject: str) -> _Subject:
        state = self._subjects.get(subject)
        if state is None:
            state = self._subjects[subject] = _Subject()
        return state

    @staticmethod
    def _check(
        subject: str, limits: Limits, state: _Subject, now: float, minute: int, weight: float, estimated: int
    ) -> RateLimited | None:
        if limits.rpm is not None:
            counter = state.requests
            counter.roll(minute)
            if over(counter.current, counter.previous, weight, limits.rpm, 1):
                wait = wait_time(counter.current, counter.previous, weight, limits.rpm, 1)
                return RateLimited(subject, "rpm", limits.rpm, wait)
        if limits.tpm is not None:
            counter = state.tokens
            counter.roll(minute)
            if over(counter.current, counter.previous, weight, limits.tpm, estimated):
                wait = wait_time(counter.current, counter.previous, weight, limits.tpm, estimated)
                return RateLimited(subject, "tpm", limits.tpm, wait)
        if limits.max_parallel is not None and state.open_leases(now) >= limits.max_parallel:
            return RateLimited(subject, "max_parallel", limits.max_parallel, 1.0)
        if limits.max_budget is not None:
            state.roll_budget(limits, now)
            if state.spent >= limits.max_budget:
                period = limits.period.text if limits.period else ""
                return RateLimited(subject, "max_budget", limits.max_budget, state.budget_end - now, period)
        return None

    def _finish(
        self, lease_id: int, checks: Sequence[tuple[str, Limits]], minute: int, delta: int, cost: float
    ) -> None:
        now = self._clock()
        for subject, limits in checks:
            state = self._subjects.get(subject)
            if state is None:
                continue
            state.leases.pop(lease_id, None)
            if limits.tpm is not None and delta:
                state.tokens.correct(minute, delta)
            if limits.max_budget is not None and cost > 0:
                state.roll_budget(limits, now)
                state.spent += cost

    async def seed_spend(self, subject: str, limits: Limits, spent: float) -> bool:
        if limits.max_budget is None:
            return True
        state = self._state(subject)
        state.roll_budget(limits, self._clock())
        state.spent = max(state.spent, spent)
        return True

    def _sweep(self, minute: int, now: float) -> None:
        for subject in [s for s, state in self._subjects.items() if state.idle(minute, now)]:
            del self._subjects[subject]

    async def close(self) -> None:
        self._subjects.clear()


class _MemoryLease(Lease):
    __slots__ = ("_checks", "_estimated", "_id", "_limiter", "_minute")

    def __init__(
        self,
        limiter: InProcessLimiter,
        lease_id: int,
        checks: tuple[tuple[str, Limits], ...],
        minute: int,
        estimated: int,
    ) -> None:
        self._done = False
        self._limiter, self._id, self._checks = limiter, lease_id, checks
        self._minute, self._estimated = minute, estimated

    async def _finish(self, tokens: int, cost: float) -> None:
        self._limiter._finish(self._id, self._checks, self._minute, tokens - self._estimated, cost)
