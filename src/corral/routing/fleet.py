"""The fleet: every deployment's state, request slots, and the wait for a free one.

``acquire`` picks the first target of an ordered pool that has a free slot, waiting briefly
(bounded) when all are full, and for a short ``warm_wait`` when the best target is warm but
full and the free ones would have to cold-load the model.

Waiting requests queue per deployment: one future, listed in the queue of every deployment
of its pool. A release wakes the first live waiter of THAT deployment only, so a freed slot
never wakes requests that cannot use it. A woken request that finds the slot already taken
(a newcomer got there first) goes back to the FRONT of its queues, and passes a wake-up on
only when it leaves a slot free that others could take (warm_wait declined a cold one): a
lost race costs one wake-up, not a walk through the whole queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable, Sequence

from corral.config.schema import RouterConfig
from corral.core.call import Target
from corral.routing.budget import RetryBudget
from corral.routing.state import DeploymentState


class Fleet:
    def __init__(self, states: Iterable[DeploymentState], cfg: RouterConfig) -> None:
        self.states: dict[str, DeploymentState] = {s.name: s for s in states}
        self.cfg = cfg
        self.budget = RetryBudget(cfg.retry_budget_percent, cfg.retry_budget_min)
        self._queues: dict[str, deque[asyncio.Future[bool]]] = {}
        self._waiting = 0  # live waiters, to know when a queue is mostly dead entries
        self.wakeups = 0  # waiters woken by a release or a hand-on (for tests and tuning)

    def release(self, state: DeploymentState, trial: bool = False) -> None:
        state.finish(trial)
        self._wake(state.name)

    def _wake(self, name: str) -> None:
        """Wake one waiter of deployment ``name`` (not all: a freed slot serves one request)."""
        queue = self._queues.get(name)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():  # done: woken through another deployment of its pool, or gone
                waiter.set_result(True)
                self.wakeups += 1
                return

    def _hand_on(self, order: Sequence[Target], now: float, panic: bool) -> None:
        """A woken waiter is not taking a slot: wake whoever could take the free ones it leaves."""
        for target in order:
            if self._free(target, now, panic):
                self._wake(target.provider)

    def _free(self, target: Target, now: float, panic: bool) -> bool:
        state = self.states[target.provider]
        usable = state.routable(now) or panic
        return usable and state.has_capacity() and not state.is_busy(now)

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
        woken = False
        while True:
            now = time.monotonic()
            chosen = next((t for t in order if self._free(t, now, panic)), None)
            if (
                chosen is not None
                and chosen is not best
                and now < warm_until
                and self._worth_waiting(best, chosen, num_ctx, now)
            ):
                chosen = None
            if chosen is not None:
                return chosen, self.states[chosen.provider].start(now)
            if woken:
                self._hand_on(order, now, panic)
            if now >= give_up:
                return None
            wake = min(give_up, warm_until if now < warm_until else give_up, self._next_unbusy(order, now))
            woken = await self._wait(order, max(0.001, wake - now), panic, front=woken)

    async def _wait(self, order: Sequence[Target], seconds: float, panic: bool, front: bool) -> bool:
        """Queue on every deployment of ``order`` until one wakes us (True) or ``seconds`` pass
        (False); ``front`` keeps the place of a waiter that was woken but lost the slot. A
        wake-up that meets a cancellation (the client went away) is handed on, never lost."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        for name in {t.provider: None for t in order}:
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = deque()
            elif len(queue) > 32 and len(queue) > 2 * self._waiting:
                self._queues[name] = queue = deque(w for w in queue if not w.done())
            if front:
                queue.appendleft(waiter)
            else:
                queue.append(waiter)
        self._waiting += 1
        timer = loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._hand_on(order, time.monotonic(), panic)
            raise
        finally:
            timer.cancel()
            self._waiting -= 1
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

    def _next_unbusy(self, order: Sequence[Target], now: float) -> float:
        times = [
            self.states[t.provider].busy_until for t in order if self.states[t.provider].busy_until > now
        ]
        return min(times) if times else now + 3600.0


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
