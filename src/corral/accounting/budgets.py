"""Budgets that survive a restart: the current window's spend, read from the usage table into
the limiter.

The in-process limiter keeps spend in memory only, so without this every restart would let a
key with ``max_budget`` spend its whole budget again (a shared Redis limiter keeps spend across
restarts, but not across a Redis restart or flush). ``BudgetSeeder.run`` is a background task:

* at start, for every gateway key with ``max_budget`` and every user in ``user_limits`` with
  ``max_budget``, it sums ``cost_usd`` of that key's (``key_id``) or user's (``user``) usage rows
  since the start of its current budget window (``Period.start``) and hands the sum to
  ``Limiter.seed_spend`` under the subject the Accountant uses ("key:<id>", "user:<name>");
* afterwards, a key whose budget period appears or changes is seeded again: at once for
  changes made through this process (``wake`` listens to the key repository), within one
  interval for changes made through another replica (each pass looks at the key cache);
* and every budget is read again every ``reseed_every`` seconds (5 minutes by default), so a
  shared limiter that lost its counts mid-window (Redis restarted or flushed) has them back
  within that time instead of at the next window.

It fails open: serving never waits for it. When the usage table cannot be read, or the limiter
cannot take the sum (``seed_spend`` returns False: a Redis limiter fails open), a
warning is logged and the next pass (``interval`` seconds later) tries again; until then the
limiter counts spend from the start of the process only, so a budget can be overspent by what
was spent earlier in the window. Seeding never lowers a count (``seed_spend`` keeps the larger of the two),
so spend the limiter counted since start is not counted twice, and every replica sharing a
Redis limiter may seed the same subject. The first pass waits (at most ``SPILL_WAIT`` seconds)
until the usage writer has replayed a spill file left by an earlier run (a crash or an
outage), so that spend is in the table when it is read; if the database stays down it seeds
without it, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from corral.accounting.accountant import key_subject, user_subject
from corral.errors import InvalidRequest
from corral.limits import Limiter, Limits, Period
from corral.store.keys import KeyRecord
from corral.usage.spend import Who, spend_since

log = logging.getLogger("corral.accounting")

Budget = tuple[Who, str, Limits]  # the usage column, the key id or user, the limits


SEED_TIMEOUT = 30.0  # seconds for one pass of reads; on timeout it is retried next interval
SPILL_WAIT = 10.0  # seconds the first pass waits for the usage writer to replay its spill file
RESEED_EVERY = 300.0  # seconds between full re-reads (a flushed Redis gets its counts back)


class LimiterUnavailable(Exception):
    """The limiter swallowed an error while seeding (a Redis limiter fails open): try again later."""


class BudgetSeeder:
    """Seeds the limiter's budgets from the usage table; ``records`` lists the known keys."""

    def __init__(
        self,
        limiter: Limiter,
        engine: AsyncEngine,
        records: Callable[[], Iterable[KeyRecord]],
        user_limits: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        spill_drained: asyncio.Event | None = None,
        reseed_every: float = RESEED_EVERY,
    ) -> None:
        self._limiter = limiter
        self._spill_drained = spill_drained
        self._engine = engine
        self._records = records
        self._clock = clock
        self._reseed_every = reseed_every
        self._last_full = clock()
        self._users: dict[str, Budget] = {}
        for user, mapping in (user_limits or {}).items():
            limits = Limits.from_mapping(mapping)  # checked by the config loader
            if limits.period is not None:
                self._users[user_subject(user)] = ("user", user, limits)
        self._seeded: dict[str, Period] = {}  # subject -> the period its spend was read for
        self._wake = asyncio.Event()
        self._failing = False
        self.ready = asyncio.Event()  # set when the first pass is over (done, or failed and logged)

    def wake(self, key_id: str, record: KeyRecord | None) -> None:
        """A key changed (a ``KeyRepo`` listener): look for new budgets now, not at the next pass."""
        self._wake.set()

    async def run(self, interval: float) -> None:
        """Seed at once, then again on ``wake`` or every ``interval`` seconds. Cancel to stop."""
        if self._spill_drained is not None and not self._spill_drained.is_set():
            try:
                async with asyncio.timeout(SPILL_WAIT):
                    await self._spill_drained.wait()
            except TimeoutError:
                log.warning(
                    "budgets: the usage spill file is not replayed yet (is the database down?); seeding "
                    "without the spend it holds"
                )
        while True:
            self._wake.clear()
            await self.seed_due()
            self.ready.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()

    async def seed_due(self) -> int:
        """Seed every subject whose budget was not read yet for its current period; return how
        many had spent something. Never raises: a failure is logged and retried next pass."""
        now = self._clock()
        if now - self._last_full >= self._reseed_every:
            self._seeded.clear()  # read everything again: seeding keeps the larger count, so it is safe
            self._last_full = now
        due = self._due()
        if not due:
            return 0
        try:
            async with asyncio.timeout(SEED_TIMEOUT):  # a hung database must not stall the seeder
                count = await self._seed(due)
        except Exception as exc:
            log.log(
                logging.DEBUG if self._failing else logging.WARNING,
                "could not seed this period's spend from the usage table (%s: %s); %d budget(s) count "
                "only what is spent from now on until it can be (retrying)",
                type(exc).__name__,
                (str(exc).splitlines() or [""])[0][:200],
                len(due),
            )
            self._failing = True
            return 0
        if self._failing:
            log.info("budgets: seeding works again")
            self._failing = False
        if count:
            log.info("budgets: seeded this period's spend of %d key(s)/user(s) from the usage table", count)
        return count

    def _due(self) -> dict[str, Budget]:
        present = dict(self._users)
        for record in self._records():
            if record.limits.get("max_budget") is None:
                continue
            try:
                limits = Limits.from_mapping(record.limits)
            except InvalidRequest:
                continue  # the Accountant refuses this key until its limits are fixed
            if limits.period is not None:
                present[key_subject(record.id)] = ("key_id", record.id, limits)
        # forget subjects that lost their budget or changed period: they are read again
        self._seeded = {s: p for s, p in self._seeded.items() if s in present and present[s][2].period == p}
        return {s: budget for s, budget in present.items() if s not in self._seeded}

    async def _seed(self, due: Mapping[str, Budget]) -> int:
        now = self._clock()
        groups: dict[tuple[Who, float], list[tuple[str, str, Limits]]] = defaultdict(list)
        for subject, (who, name, limits) in due.items():
            assert limits.period is not None
            groups[(who, limits.period.start(now))].append((subject, name, limits))
        count = 0
        for (who, start), budgets in groups.items():
            since = datetime.fromtimestamp(start, UTC)
            spent = await spend_since(self._engine, who, [name for _, name, _ in budgets], since)
            for subject, name, limits in budgets:
                assert limits.period is not None
                if limits.period.start(self._clock()) != start:
                    continue  # the window turned while reading: the next pass reads the new one
                if spent.get(name):
                    if not await self._limiter.seed_spend(subject, limits, spent[name]):
                        raise LimiterUnavailable("the limiter's store did not take the spend (see its log)")
                    count += 1
                self._seeded[subject] = limits.period
        return count


__all__ = ["BudgetSeeder"]
