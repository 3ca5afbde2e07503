"""The engine: plan the attempts for a call and run them until one answers.

A call from a surface the chosen upstream speaks is passed through (``provider.send``); any other
is answered through the conversation model (``provider.converse``): the one place that choice is
made, so no provider branches on surfaces.

For each pool in the plan (the requested model, then its fallbacks) the engine takes a slot
on the best free deployment, sends the call with a first-token deadline, and on a failure
that another deployment could fix moves on, within the request deadline and the retry
budget. A stream is committed to the client only after its first chunk arrived; later
failures travel in-band (providers send the error event) and are recorded here.

Each attempt's first-token deadline adapts (routing/deadlines.py): a few times the recent warm
p99 of that model on that deployment, a load allowance when the model must load. A pool with
``hedge_after`` races a second candidate when the first sent nothing by then (core/hedge.py).
A model that fails on one deployment is skipped there while its other models keep serving.
A call with a session pin starts on its pinned deployment, within a bounded wait for its slot,
unless routing/pinning.py sends it elsewhere at once (a reload there, or a short prompt spilling).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from itertools import count
from typing import Any

from corral.config.schema import RouterConfig
from corral.conversation.call import Attempt, Call, Reply, Route, Served, Target
from corral.core import hedge
from corral.core.failures import AllAttemptsFailed, AttemptRecord, classify
from corral.core.streams import Relay
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout
from corral.providers.base import Provider
from corral.routing import planner
from corral.routing.affinity import Affinity, key_of
from corral.routing.catalog import Catalog
from corral.routing.deadlines import DeadlinePolicy
from corral.routing.fit import Fit
from corral.routing.fleet import Fleet
from corral.routing.pinning import loads_again, spill_to
from corral.routing.state import DeploymentState
from corral.routing.strategies import Context, order


class Engine:
    def __init__(
        self,
        catalog: Catalog,
        providers: Mapping[str, Provider],
        fleet: Fleet,
        timeouts: Mapping[str, float | None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.providers = providers
        self.fleet = fleet
        self.cfg: RouterConfig = fleet.cfg
        self._first_token = dict(timeouts or {})
        self.on_missing_model: Callable[[str], None] = lambda provider: None
        self.fit: Fit | None = None  # capability and context checks (routing/fit.py), set by the gateway
        self.affinity: Affinity | None = None  # session affinity (routing/affinity.py), set by the gateway
        self._affine: dict[str, bool] = {}  # pool name -> affinity applies (cleared with the plans)
        self.policy = DeadlinePolicy(
            self.cfg.first_token_multiplier,
            self.cfg.first_token_min,
            self.cfg.first_token_max,
            self.cfg.load_timeout,
        )
        self._plans: dict[tuple[str, str | None], list[Route]] = {}
        self._plans_version = -1
        self._counter = count()
        self._rng = random.Random()  # noqa: S311 - load spreading, not security

    async def handle(self, call: Call, power: str | None = None, tier: str | None = None) -> Reply:
        """Answer ``call``; ``tier`` (the caller's key's) picks a power level's rules."""
        name = f"corral/{power}" if power else call.model
        routes = self._plan(name, tier)
        if self.fit is not None:  # leave out what cannot serve it; a 400 when nothing can
            routes = self._fitting(call, routes, self.fit)
        deadline = time.monotonic() + self.cfg.request_timeout
        attempts: list[AttemptRecord] = []
        budget = self.fleet.budget
        budget.active += 1
        try:
            for index, route in enumerate(routes):
                key = self._pin_key(call, route)
                last = index == len(routes) - 1
                reply = await self._try_pool(call, route, index > 0, deadline, attempts, key, last)
                if reply is not None:
                    return reply
                if time.monotonic() >= deadline or len(attempts) >= self.cfg.max_attempts:
                    break
        finally:
            budget.active -= 1
        raise AllAttemptsFailed.from_attempts(call.model, attempts)

    def _plan(self, name: str, tier: str | None = None) -> list[Route]:
        """The plan for ``name`` (and a power level's for ``tier``), cached until a catalog changes."""
        if self._plans_version != self.catalog.version:
            self._plans.clear()
            self._affine.clear()
            self._plans_version = self.catalog.version
        key = (name, tier if self.cfg.rules and name.startswith("corral/") else None)
        routes = self._plans.get(key)
        if routes is None:
            routes = planner.plan(self.catalog, name, self.cfg.power_levels, self.cfg.rules, key[1])
            if len(self._plans) < 10_000:  # names come from clients: bound the cache
                self._plans[key] = routes
        return routes

    def _fitting(self, call: Call, routes: list[Route], fit: Fit) -> list[Route]:
        """The plan's targets that can serve ``call``; raises a 400 when none can."""
        requested = _requested_ctx(call)
        chosen = fit.select(call, routes, self.catalog.version, lambda r: r.num_ctx or requested, self._plan)
        return chosen if isinstance(chosen, list) else list(chosen)  # the plan itself, most often

    def _pin_key(self, call: Call, route: Route) -> str | None:
        """The session-affinity key of ``call`` in ``route``'s pool, when affinity applies there."""
        if self.affinity is None:
            return None
        applies = self._affine.get(route.name)
        if applies is None:
            applies = self.affinity.applies(route, {n: s.type for n, s in self.fleet.states.items()})
            if len(self._affine) < 10_000:
                self._affine[route.name] = applies
        return key_of(call, route.name) if applies else None

    async def _try_pool(
        self,
        call: Call,
        route: Route,
        fallback: bool,
        deadline: float,
        attempts: list[AttemptRecord],
        pin_key: str | None = None,
        last: bool = True,
    ) -> Reply | None:
        num_ctx = route.num_ctx or _requested_ctx(call)
        ctx = Context(next(self._counter), num_ctx, self._rng)
        now = time.monotonic()
        states = self.fleet.states
        ranked = order(route.targets, states, route.strategy or self.cfg.strategy, ctx, now)
        # a model ejected on a deployment is skipped there, unless nothing else is left (panic)
        ranked = [t for t in ranked if states[t.provider].model_usable(t.model, now)] or ranked
        hedge_after = route.hedge_after if route.hedge_after is not None else self.cfg.hedge_after
        pinned = self.affinity.pinned(pin_key, ranked) if pin_key and self.affinity else None
        if pinned is not None and pinned is not ranked[0] and loads_again(pinned, ranked[0], states, num_ctx):
            pinned = None  # it would load the model again, and its cache with it: the strategy's pick
        spilled: str | None = None  # took a short prompt at once: its pinned deployment was full
        while ranked and len(attempts) < self.cfg.max_attempts:
            if attempts and not self.fleet.budget.allow():
                attempts.append(
                    AttemptRecord(route.name, None, "skipped: retry budget exhausted", 503, busy=True)
                )
                return None
            slot = None
            if pinned is not None and self.affinity is not None:  # its slot first, within a bounded wait
                slot = await self.fleet.try_acquire((pinned,))  # fleet-wide too (Redis), as acquire_slot
                if slot is None:  # full: a short prompt goes to a free warm deployment, never waiting
                    spill = spill_to(self.fleet, call, pinned, ranked, num_ctx, self.affinity.spill_below)
                    slot = await self.fleet.try_acquire(spill) if spill else None
                    spilled = slot[0].provider if slot else None
                if slot is None:
                    wait_until = min(deadline, time.monotonic() + self.affinity.wait)
                    slot = await self.fleet.acquire_slot([pinned], wait_until, num_ctx)
                pinned = None
            slot = slot or await self.fleet.acquire_slot(ranked, deadline, num_ctx)
            if slot is None:
                attempts.append(AttemptRecord(route.name, None, "every deployment was busy", 503, busy=True))
                return None
            target, trial = slot
            ranked = [t for t in ranked if t != target]
            delay = self._hedge_delay(hedge_after, target, call.stream) if ranked else None
            try:
                if delay is None:
                    elsewhere = bool(ranked) or not last  # else a cold model gets the load allowance
                    reply = await self._guarded(
                        call, route, target, trial, fallback, deadline, attempts, elsewhere=elsewhere
                    )
                else:
                    reply = await self._hedged(
                        call, route, (target, trial), fallback, deadline, attempts, ranked, delay
                    )
            except _Retry:
                continue
            if pin_key is not None and self.affinity is not None and reply.served is not None:
                served = reply.served.provider  # the pin moves to it, after a spill too (Affinity.record)
                reply.headers["x-corral-affinity"] = self.affinity.record(
                    pin_key, served, spilled=served == spilled
                )
            return reply
        return None

    async def _guarded(
        self,
        call: Call,
        route: Route,
        target: Target,
        trial: bool,
        fallback: bool,
        deadline: float,
        attempts: list[AttemptRecord],
        hedging: bool = False,
        elsewhere: bool = True,
    ) -> Reply:
        """One attempt on a slot already taken; a failure another deployment may fix is recorded
        and raised as ``_Retry``, any other raised as it is; the slot is freed either way. A retry
        (or a hedge's second attempt) counts against the retry budget while it runs."""
        state = self.fleet.states[target.provider]
        retry = hedging or bool(attempts)
        if retry:
            self.fleet.budget.retrying += 1
        try:
            return await self._attempt(call, route, target, trial, fallback, deadline, attempts, elsewhere)
        except UpstreamError as exc:
            if isinstance(exc, UpstreamRejected) and exc.capability and self.fit is not None:
                self.fit.learn_refusal(target, exc.capability)
            retryable = classify(exc, state, self.cfg, attempts, route.name, target, self.on_missing_model)
            self.fleet.release(state, trial)
            if not retryable:
                raise
            raise _Retry from exc
        except BaseException:  # cancelled (client gone, or lost a hedge) or a bug: free the slot
            self.fleet.release(state, trial)
            raise
        finally:
            if retry:
                self.fleet.budget.retrying -= 1

    def _hedge_delay(self, hedge_after: float | str | None, target: Target, stream: bool) -> float | None:
        """Seconds without an answer before a second candidate starts; None: no hedging here.
        A quantile is of first-token times: a whole answer takes longer than its first token,
        so it is not hedged by one (only by a fixed ``hedge_after``)."""
        if hedge_after is None or isinstance(hedge_after, float | int):
            return hedge_after
        if not stream:
            return None
        return self.fleet.states[target.provider].first_tokens.warm_quantile(target.model, hedge_after)

    async def _hedged(
        self,
        call: Call,
        route: Route,
        first: tuple[Target, bool],
        fallback: bool,
        deadline: float,
        attempts: list[AttemptRecord],
        ranked: list[Target],
        delay: float,
    ) -> Reply:
        """The first attempt raced against the next free candidate after ``delay`` (core/hedge.py)."""

        async def backup() -> tuple[Target, Coroutine[Any, Any, Reply]] | None:
            if len(attempts) + 1 >= self.cfg.max_attempts or not self.fleet.budget.allow():
                return None
            taken = await self.fleet.try_acquire(ranked)  # a fleet-counted slot: one round trip
            if taken is None:
                return None  # no free slot now: keep waiting for the first
            target, trial = taken
            ranked.remove(target)
            return target, self._guarded(call, route, target, trial, fallback, deadline, attempts, True)

        first_target, first_trial = first
        won = await hedge.race(
            (
                first_target,
                self._guarded(call, route, first_target, first_trial, fallback, deadline, attempts),
            ),
            delay,
            backup,
            retryable=_Retry,
            discard=_discard,
        )
        if won.cancelled is not None:
            attempts.append(
                AttemptRecord(route.name, won.cancelled, "cancelled: another deployment answered first", 499)
            )
            if won.value.served is not None:
                won.value.served = dataclasses.replace(won.value.served, attempts=len(attempts))
        return won.value

    async def _attempt(
        self,
        call: Call,
        route: Route,
        target: Target,
        trial: bool,
        fallback: bool,
        deadline: float,
        attempts: list[AttemptRecord],
        elsewhere: bool = True,
    ) -> Reply:
        """One attempt. On failure it raises with the slot held: the caller classifies, then frees it.
        ``elsewhere``: another deployment could still be tried (see routing/deadlines.py)."""
        state = self.fleet.states[target.provider]
        provider = self.providers[target.provider]
        started = time.monotonic()
        remaining = max(0.001, deadline - started)
        fixed = self._first_token.get(target.provider) or self.cfg.failover_timeout
        first, warm = state.first_token_deadline(
            target.model,
            route.num_ctx or _requested_ctx(call),
            fixed,
            self.policy,
            started,
            elsewhere,
            len(call.raw),
        )
        timeout = min(first, remaining)
        attempt = Attempt(
            model=target.model, first_byte_timeout=timeout, num_ctx=route.num_ctx, elsewhere=elsewhere
        )
        # health checks leave it alone until its first token (a stream) or its reply is due
        state.expect_first_byte(started + (timeout if call.stream else remaining))
        # the upstream's own API: passed through; any other: through the conversation model
        answer = provider.send if call.surface in provider.speaks else provider.converse
        if call.stream:
            try:
                async with asyncio.timeout(timeout):
                    reply = await answer(call, attempt)
                    if reply.chunks is not None:
                        reply.chunks = await _primed(reply.chunks, target.provider)
            except TimeoutError:
                raise UpstreamTimeout(
                    target.provider,
                    f"sent no first token within {timeout:.3g} s.",
                    code="first_token_timeout",
                ) from None
            first_at: float | None = time.monotonic()
        else:
            reply = await answer(call, attempt)
            first_at = reply.outcome.first_token_at  # a whole answer the provider streamed and folded
        if first_at is not None:
            state.first_tokens.observe(
                target.model, first_at - started, warm is not False, started, len(call.raw)
            )
        state.record_success((time.monotonic() - started) * 1000)
        state.record_model_success(target.model)
        attempts.append(AttemptRecord(route.name, target, "ok", 200))
        reply.served = Served(target.provider, target.model, len(attempts), route.name if fallback else None)
        if reply.chunks is None:
            self.fleet.release(state, trial)
        else:
            stream = reply.chunks if isinstance(reply.chunks, Relay) else Relay(reply.chunks)
            reply.chunks = self._finish_stream(stream, reply, state, trial)
        return reply

    def _finish_stream(self, stream: Relay, reply: Reply, state: DeploymentState, trial: bool) -> Relay:
        """When the stream ends, however it ends: record a mid-stream failure and free the slot."""

        def done() -> None:
            if reply.outcome.error:
                state.record_failure(time.monotonic(), reply.outcome.error, self.cfg)
            self.fleet.release(state, trial)

        return stream.report_to(state).then(done)  # each chunk: a sign of life for health checks


class _Retry(Exception):
    """An attempt failed in a way another deployment may fix; it is already recorded."""


async def _discard(reply: Reply) -> None:
    """Close an answer that lost the race after all (its stream's close frees its slot)."""
    if reply.chunks is not None:
        close = getattr(reply.chunks, "aclose", None)
        if close is not None:
            await close()


async def _primed(chunks: AsyncIterator[bytes], provider: str) -> Relay:
    """Read the first non-empty chunk now (errors surface before commit), then replay it."""
    first = b""
    try:
        while not first:
            first = await anext(chunks)
    except StopAsyncIteration:
        raise UpstreamError(
            provider, "ended the stream before sending anything.", code="upstream_empty_stream"
        ) from None
    except BaseException:
        await Relay(chunks).aclose()
        raise
    return Relay(chunks, first)


def _requested_ctx(call: Call) -> int | None:
    value = call.body.get("num_ctx")
    if value is None:
        options = call.body.get("options")
        value = options.get("num_ctx") if isinstance(options, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
