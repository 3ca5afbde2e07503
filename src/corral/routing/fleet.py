"""The fleet: every deployment's state, request slots, and the wait for a free one.

``acquire`` picks the first target of an ordered pool that has a free slot, waiting briefly
(bounded) when all are full, and for a short ``warm_wait`` when the best target is warm but
full and the free ones would have to cold-load the model.

Waiting requests queue per deployment: one future, listed in the queue of every deployment
of its pool that it could take a slot on now (routable, or any in panic mode; not a cold one
it is declining during ``warm_wait``). A release wakes the first live waiter of THAT
deployment only, and the wake-up names it. A woken request that does not take that
deployment's slot (a newcomer took it first, or it took another of its pool) passes the
wake-up on only if the slot is still free; a request that re-queues keeps its place at the
front. So a lost race costs one wake-up, not a walk through the queue, and two requests
cannot bounce a wake-up between them: whoever declines a deployment is not queued on it.
Ejections and busy back-offs end on a timer, so a waiter also wakes when one ends.

The queues live on the deployment states, not here: a live reconfiguration builds a new fleet
that shares the states of unchanged deployments, while requests already waiting stay in the old
fleet's ``acquire`` and requests in flight release through the old engine. A slot freed through
either fleet wakes the first waiter of that deployment, whichever fleet it queued through.

With ``shared`` (``corral.cluster.slots``, when workers share Redis) a deployment's
``max_parallel`` holds across every worker: a locally free slot is also taken in Redis (one
round trip) and, when the fleet holds all of them, the request waits here as for a full pool
until a release anywhere wakes it (``freed_elsewhere``) or a short recheck passes.

A hedge's second attempt never waits for a release: ``try_acquire`` takes a fleet-counted
deployment's slot with one round trip (``SharedSlots.take`` refuses when the fleet holds every
slot, it never waits for one to free) and passes over a full one. So does a short prompt that
spills from its full pinned deployment (routing/pinning.py), which asks ``free_now`` first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from corral.config.schema import RouterConfig
from corral.conversation.call import Target
from corral.routing.budget import RetryBudget
from corral.routing.state import DeploymentState

FLEET_FULL_RECHECK = 0.25  # s: a waiter refused by the fleet-wide cap asks again after this at most


class SharedSlots(Protocol):
    async def take(self, name: str, cap: int) -> bool: ...
    def give(self, name: str, cap: int) -> None: ...


class Fleet:
    def __init__(
        self, states: Iterable[DeploymentState], cfg: RouterConfig, budget: RetryBudget | None = None
    ) -> None:
        self.states: dict[str, DeploymentState] = {s.name: s for s in states}
        self.cfg = cfg
        self.budget = budget or RetryBudget(cfg.retry_budget_percent, cfg.retry_budget_min)
        self.wakeups = 0  # waiters woken by a release or a hand-on (for tests and tuning)
        self.shared: SharedSlots | None = None  # max_parallel across workers (corral.cluster)

    def queued(self, name: str) -> int:
        """Requests queued for a slot on deployment ``name`` now, through any fleet, not yet woken."""
        state = self.states.get(name)
        return 0 if state is None else sum(1 for waiter in state.waiters if not waiter.done())

    def release(self, state: DeploymentState, trial: bool = False) -> None:
        state.finish(trial)
        if self.shared is not None and state.max_parallel:
            self.shared.give(state.name, state.max_parallel)
        self._wake(state)

    def freed_elsewhere(self, name: str) -> None:
        """Another worker freed a slot of ``name`` that was full fleet-wide: wake one waiter here."""
        state = self.states.get(name)
        if state is not None:
            state.fleet_full_until = 0.0
            if state.has_capacity():
                self._wake(state)

    async def _take_shared(self, state: DeploymentState, trial: bool) -> bool:
        """The fleet-wide slot for a local one just started; False (local slot undone) if full."""
        if self.shared is None or not state.max_parallel:
            return True
        try:
            if await self.shared.take(state.name, state.max_parallel):
                return True
        except BaseException:
            state.finish(trial)
            raise
        state.finish(trial)
        state.fleet_full_until = time.monotonic() + FLEET_FULL_RECHECK
        return False

    def _wake(self, state: DeploymentState) -> None:
        """Wake one waiter of ``state`` (not all: a freed slot serves one request)."""
        queue = state.waiters
        while queue:
            waiter = queue.popleft()
            if not waiter.done():  # done: woken through another deployment of its pool, or gone
                waiter.set_result(state.name)
                self.wakeups += 1
                return

    def _pass_on(self, name: str) -> None:
        """We were woken for ``name`` but are not taking its slot: if it is still free, wake the next."""
        state = self.states.get(name)
        if state is not None and state.has_capacity():
            self._wake(state)

    def _free(self, target: Target, now: float, panic: bool) -> bool:
        state = self.states[target.provider]
        usable = state.routable(now) or panic
        return usable and state.has_capacity() and not state.is_busy(now) and state.fleet_full_until <= now

    def free_now(self, target: Target, now: float) -> bool:
        """Could ``target`` take a request this instant without a wait: routable, a free slot
        here, not backing off, not held full fleet-wide (``try_acquire`` would take it)."""
        return self._free(target, now, False)

    async def try_acquire(self, order: Sequence[Target]) -> tuple[Target, bool] | None:
        """A slot on the first free, routable target of ``order`` now, never waiting (a hedge's
        second attempt: when none is free it keeps waiting for the first), and whether it is a
        trial. A fleet-counted target's slot is taken with one round trip to Redis; one the fleet
        holds full is passed over at once (rechecked after ``FLEET_FULL_RECHECK``)."""
        for target in order:
            now = time.monotonic()
            if not self._free(target, now, False):
                continue
            state = self.states[target.provider]
            trial = state.start(now)
            if await self._take_shared(state, trial):
                return target, trial
        return None

    async def acquire(self, order: Sequence[Target], deadline: float, num_ctx: int | None) -> Target | None:
        """Take a slot on the best free target of ``order``; None if none frees up in time."""
        slot = await self.acquire_slot(order, deadline, num_ctx)
        return slot[0] if slot else None

    async def acquire_slot(
        self, order: Sequence[Target], deadline: float, num_ctx: int | None
    ) -> tuple[Target, bool] | None:
        """As ``acquire``; also says whether this request is the single trial of an ejected target."""
        if not order:
            return None
        now = time.monotonic()
        panic = not any(self.states[t.provider].routable(now) for t in order)
        give_up = min(deadline, now + self.cfg.queue_timeout)
        warm_until = min(give_up, now + self.cfg.warm_wait)
        best = order[0]
        woken_by: str | None = None
        queued = False
        while True:
            now = time.monotonic()
            warming = now < warm_until
            chosen = next((t for t in order if self._free(t, now, panic)), None)
            if chosen is not None and not self._usable(chosen, best, num_ctx, now, panic, warming):
                chosen = None  # free but cold while the warm best may free up: wait for it
            if chosen is not None:
                state = self.states[chosen.provider]
                trial = state.start(now)
                if self.shared is None or await self._take_shared(state, trial):
                    if woken_by is not None and woken_by != chosen.provider:
                        self._pass_on(woken_by)
                    return chosen, trial
                continue  # the fleet holds every slot of it: another target, or wait as for a full pool
            if woken_by is not None:
                self._pass_on(woken_by)
            if now >= give_up:
                return None
            wake = min(give_up, warm_until if warming else give_up, self._next_change(order, now))
            usable = [t.provider for t in order if self._usable(t, best, num_ctx, now, panic, warming)]
            woken_by = await self._wait(usable, max(0.001, wake - now), front=queued)
            queued = True

    def _usable(
        self, target: Target, best: Target, num_ctx: int | None, now: float, panic: bool, warming: bool
    ) -> bool:
        """Could this waiter take a slot on ``target`` if one freed now? (Where it queues.)"""
        if not (panic or self.states[target.provider].routable(now)):
            return False
        return not (warming and target is not best and self._worth_waiting(best, target, num_ctx, now))

    async def _wait(self, names: Sequence[str], seconds: float, front: bool) -> str | None:
        """Queue on the deployments ``names`` until one wakes us (its name) or ``seconds`` pass
        (None); ``front`` keeps the place of a waiter that already waited. A wake-up that meets
        a cancellation (the client went away) is passed on, never lost."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[str | None] = loop.create_future()
        states = [self.states[name] for name in dict.fromkeys(names)]
        for state in states:
            queue = state.waiters
            if len(queue) > 32 and len(queue) > 2 * state.waiting:  # mostly dead entries: drop them
                live = [w for w in queue if not w.done()]
                queue.clear()
                queue.extend(live)
            if front:
                queue.appendleft(waiter)
            else:
                queue.append(waiter)
            state.waiting += 1
        timer = loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        except BaseException:
            woken_by = waiter.result() if waiter.done() and not waiter.cancelled() else None
            if woken_by is not None:
                self._pass_on(woken_by)
            raise
        finally:
            timer.cancel()
            for state in states:
                state.waiting -= 1
        return waiter.result()

    def _worth_waiting(self, best: Target, chosen: Target, num_ctx: int | None, now: float) -> bool:
        """Best is warm but full, the free one is cold: a cold load costs more than a short wait."""
        best_state, chosen_state = self.states[best.provider], self.states[chosen.provider]
        return (
            best_state.warm(best.model, num_ctx) is True
            and chosen_state.warm(chosen.model, num_ctx) is False
            and best_state.routable(now)
            and not best_state.is_busy(now)
        )

    def _next_change(self, order: Sequence[Target], now: float) -> float:
        """When the next busy back-off or ejection in ``order`` ends (no release announces it)."""
        times = [
            t
            for target in order
            for t in (
                self.states[target.provider].busy_until,
                self.states[target.provider].ejected_until,
                self.states[target.provider].fleet_full_until,
            )
            if t > now
        ]
        return min(times) if times else now + 3600.0


def _expire(waiter: asyncio.Future[str | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
