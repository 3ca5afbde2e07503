"""The fleet: every deployment's state, request slots, and the wait for a free one.

``acquire`` picks the first target of an ordered pool that has a free slot, waiting briefly
(bounded) when all are full, and for a short ``warm_wait`` when the best target is warm but
full and the free ones would have to cold-load the model.
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
        self._waiters: deque[asyncio.Future[None]] = deque()

    def release(self, state: DeploymentState, trial: bool = False) -> None:
        state.finish(trial)
        self._wake_one()

    def _wake_one(self) -> None:
        """Wake one waiter (not all: a freed slot serves one request; no thundering herd)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

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
                self._wake_one()  # the slot we were woken for is not usable by us: pass it on
            if now >= give_up:
                return None
            wake = min(give_up, warm_until if now < warm_until else give_up, self._next_unbusy(order, now))
            woken = await self._wait(max(0.001, wake - now))

    async def _wait(self, seconds: float) -> bool:
        """Queue until a slot is released (True) or ``seconds`` pass (False). A wake-up that
        meets a cancellation (the client went away) is handed on, never lost."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout=seconds)
        except TimeoutError:
            return False
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()
            raise
        return True

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
