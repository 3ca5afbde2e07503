"""The engine: plan the attempts for a call and run them until one answers.

A call from a surface the chosen upstream speaks is passed through (``provider.send``); any other
is answered through the conversation model (``provider.converse``): the one place that choice is
made, so no provider branches on surfaces.

For each pool in the plan (the requested model, then its fallbacks) the engine takes a slot
on the best free deployment, sends the call with a first-token deadline, and on a failure
that another deployment could fix moves on, within the request deadline and the retry
budget. A stream is committed to the client only after its first chunk arrived; later
failures travel in-band (providers send the error event) and are recorded here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from itertools import count

from corral.config.schema import RouterConfig
from corral.conversation.call import Attempt, Call, Reply, Route, Served, Target
from corral.core.failures import AllAttemptsFailed, AttemptRecord, classify
from corral.core.streams import Relay
from corral.errors import UpstreamError, UpstreamTimeout
from corral.providers.base import Provider
from corral.routing import planner
from corral.routing.catalog import Catalog
from corral.routing.fleet import Fleet
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
        self._plans: dict[str, list[Route]] = {}
        self._plans_version = -1
        self._counter = count()
        self._rng = random.Random()  # noqa: S311 - load spreading, not security

    async def handle(self, call: Call, power: str | None = None) -> Reply:
        name = f"corral/{power}" if power else call.model
        routes = self._plan(name)
        deadline = time.monotonic() + self.cfg.request_timeout
        attempts: list[AttemptRecord] = []
        budget = self.fleet.budget
        budget.active += 1
        try:
            for index, route in enumerate(routes):
                reply = await self._try_pool(call, route, index > 0, deadline, attempts)
                if reply is not None:
                    return reply
                if time.monotonic() >= deadline or len(attempts) >= self.cfg.max_attempts:
                    break
        finally:
            budget.active -= 1
        raise AllAttemptsFailed.from_attempts(call.model, attempts)

    def _plan(self, name: str) -> list[Route]:
        """The plan for ``name``, cached until a catalog changes."""
        if self._plans_version != self.catalog.version:
            self._plans.clear()
            self._plans_version = self.catalog.version
        routes = self._plans.get(name)
        if routes is None:
            routes = planner.plan(self.catalog, name, self.cfg.power_levels)
            if len(self._plans) < 10_000:  # names come from clients: bound the cache
                self._plans[name] = routes
        return routes

    async def _try_pool(
        self, call: Call, route: Route, fallback: bool, deadline: float, attempts: list[AttemptRecord]
    ) -> Reply | None:
        num_ctx = route.num_ctx or _requested_ctx(call)
        ctx = Context(next(self._counter), num_ctx, self._rng)
        ranked = order(
            route.targets, self.fleet.states, route.strategy or self.cfg.strategy, ctx, time.monotonic()
        )
        while ranked and len(attempts) < self.cfg.max_attempts:
            if attempts and not self.fleet.budget.allow():
                attempts.append(
                    AttemptRecord(route.name, None, "skipped: retry budget exhausted", 503, busy=True)
                )
                return None
            slot = await self.fleet.acquire_slot(ranked, deadline, num_ctx)
            if slot is None:
                attempts.append(AttemptRecord(route.name, None, "every deployment was busy", 503, busy=True))
                return None
            target, trial = slot
            state = self.fleet.states[target.provider]
            ranked = [t for t in ranked if t != target]
            retry = bool(attempts)
            if retry:
                self.fleet.budget.retrying += 1
            try:
                return await self._attempt(call, route, target, trial, fallback, deadline, attempts)
            except UpstreamError as exc:
                retryable = classify(
                    exc, state, self.cfg, attempts, route.name, target, self.on_missing_model
                )
                self.fleet.release(state, trial)
                if not retryable:
                    raise
            except BaseException:  # cancelled (client gone) or a bug: free the slot, keep the trial fair
                self.fleet.release(state, trial)
                raise
            finally:
                if retry:
                    self.fleet.budget.retrying -= 1
        return None

    async def _attempt(
        self,
        call: Call,
        route: Route,
        target: Target,
        trial: bool,
        fallback: bool,
        deadline: float,
        attempts: list[AttemptRecord],
    ) -> Reply:
        """One attempt. On failure it raises with the slot held: the caller classifies, then frees it."""
        state = self.fleet.states[target.provider]
        provider = self.providers[target.provider]
        remaining = max(0.001, deadline - time.monotonic())
        timeout = min(self._first_token.get(target.provider) or self.cfg.failover_timeout, remaining)
        attempt = Attempt(model=target.model, first_byte_timeout=timeout, num_ctx=route.num_ctx)
        started = time.monotonic()
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
                    target.provider, f"sent no first token within {timeout:g} s.", code="first_token_timeout"
                ) from None
        else:
            reply = await answer(call, attempt)
        state.record_success((time.monotonic() - started) * 1000)
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
