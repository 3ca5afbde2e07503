"""Per request, at the edge: admit it against the caller's limits, then, when it ends (after
the response is written, or when its stream closes), write one usage record, update the
metrics and settle the limits lease.

Nothing here waits on I/O on the request path except a shared (Redis) limiter's one round
trip, and only for keys that have limits. Unauthenticated requests get no usage record: an
anonymous client must not be able to write to the usage table.

A key whose stored limits cannot be read (a value an older version accepted, e.g. a
``budget_period`` of "fortnight") fails closed: its requests get 403 ``key_limits_invalid``
naming the bad limit and the fix, and one warning per stored record is logged. Letting it
through unlimited would silently lift a budget; the key store refuses such values now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from corral.accounting.end_user import end_user
from corral.accounting.tokens import usage_of
from corral.core.call import Call, Endpoint, Reply, Surface
from corral.errors import CorralError, InvalidRequest, PermissionDenied
from corral.keys.principal import Principal
from corral.limits import Lease, Limiter, Limits
from corral.usage.prices import PriceTable
from corral.usage.record import UsageRecord

log = logging.getLogger("corral.accounting")


# The usage record's and the metrics' name of the API a call came in on (corral.usage.record.SURFACES).
SURFACE_NAMES: dict[tuple[Surface, Endpoint], str] = {
    **{(Surface.OLLAMA, endpoint): "ollama" for endpoint in Endpoint},
    **{(Surface.MESSAGES, endpoint): "anthropic_messages" for endpoint in Endpoint},
    **{(Surface.RESPONSES, endpoint): "openai_responses" for endpoint in Endpoint},
    (Surface.OPENAI, Endpoint.CHAT): "openai_chat",
    (Surface.OPENAI, Endpoint.COMPLETION): "openai_completions",
    (Surface.OPENAI, Endpoint.EMBEDDING): "embeddings",
    (Surface.OPENAI, Endpoint.LEGACY_EMBEDDING): "embeddings",
}


def surface_name(call: Call) -> str:
    return SURFACE_NAMES.get((call.surface, call.endpoint), call.surface.value)


def key_subject(key_id: str) -> str:
    """The limiter subject of a gateway key's own limits."""
    return f"key:{key_id}"


def user_subject(user: str) -> str:
    """The limiter subject of a user's limits (``user_limits`` in the config)."""
    return f"user:{user}"


class RecordSink(Protocol):
    def submit(self, record: UsageRecord) -> None: ...


class RequestMetrics(Protocol):
    def inc_in_flight(self) -> None: ...
    def dec_in_flight(self) -> None: ...
    def observe_request(
        self,
        *,
        model: str,
        provider: str,
        status: int,
        streamed: bool,
        surface: str,
        latency_s: float,
        ttft_s: float | None,
        overhead_s: float,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        fallback: bool,
    ) -> None: ...


@dataclass(slots=True)
class Ticket:
    who: Principal
    user: str | None
    started: float
    at: datetime
    lease: Lease | None
    engine_started: float = 0.0
    engine_done: float = 0.0
    finished: bool = False


class Accountant:
    def __init__(
        self,
        *,
        writer: RecordSink | None,
        metrics: RequestMetrics | None,
        limiter: Limiter | None,
        prices: PriceTable,
        provider_type: Callable[[str], str | None],
        user_limits: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self.limiter = limiter
        self.prices = prices
        self._provider_type = provider_type
        self._pending: set[asyncio.Task[None]] = set()
        self._user_limits = {user: Limits.from_mapping(v) for user, v in (user_limits or {}).items()}
        # key id -> (the limits mapping it was parsed from, the parsed Limits or why they are
        # invalid): parsed once per key and parsed again when the key's record (and so its
        # mapping) is replaced
        self._key_limits: dict[str, tuple[Mapping[str, Any], Limits | str]] = {}

    async def admit(self, who: Principal, call: Call, started: float) -> Ticket:
        """Check the key's (and its user's) limits; raises RateLimited (429)."""
        user = who.owner
        if user is None:
            user = end_user(call)
        lease = None
        if self.limiter is not None:
            checks = []
            if who.limits:
                limits = self._limits_of(who)
                if not limits.empty:
                    checks.append((key_subject(who.key_id), limits))
            if user is not None and user in self._user_limits:
                checks.append((user_subject(user), self._user_limits[user]))
            if checks:
                lease = await self.limiter.admit_many(checks, estimated_tokens=max(1, len(call.raw) // 4))
        if self.metrics is not None:
            self.metrics.inc_in_flight()
        return Ticket(who=who, user=user, started=started, at=datetime.now(UTC), lease=lease)

    def _limits_of(self, who: Principal) -> Limits:
        """The key's parsed limits; raises PermissionDenied (fail closed) when they are invalid."""
        cached = self._key_limits.get(who.key_id)
        if cached is None or cached[0] is not who.limits:
            parsed: Limits | str
            try:
                parsed = Limits.from_mapping(who.limits)
            except InvalidRequest as exc:
                parsed = exc.message
                log.warning(
                    "gateway key %s has invalid stored limits and is refused until they are fixed "
                    "(PATCH /admin/keys/%s): %s",
                    who.key_id,
                    who.key_id,
                    parsed,
                )
            cached = self._key_limits[who.key_id] = (who.limits, parsed)
        if isinstance(cached[1], str):  # a fresh error each time: a re-raised one keeps growing its traceback
            raise PermissionDenied(
                f"This key's limits are invalid, so it is refused until an admin fixes them "
                f"(PATCH /admin/keys/{who.key_id}): {cached[1]}",
                code="key_limits_invalid",
            )
        return cached[1]

    def finish(self, ticket: Ticket, call: Call, reply: Reply | None, error: CorralError | None) -> None:
        """The request is over (answered, streamed to the end, or failed). Call exactly once."""
        if ticket.finished:
            return
        ticket.finished = True
        try:
            self._finish(ticket, call, reply, error)
        except Exception:  # accounting must never break serving; the metric below shows it
            log.exception("could not account for request %s", call.request_id)

    def _finish(self, t: Ticket, call: Call, reply: Reply | None, error: CorralError | None) -> None:
        now = time.monotonic()
        latency = now - t.started
        by = reply.served if reply is not None else None
        provider = by.provider if by is not None else None
        served = by.model if by is not None else None
        outcome = reply.outcome if reply is not None else None
        usage = usage_of(call, outcome)
        prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, usage.estimated
        ptype = self._provider_type(provider) if provider else None
        cost = (
            self.prices.cost(served or call.model, ptype, prompt, completion, provider)
            if reply is not None
            else 0.0
        )
        ttft = None if outcome is None or outcome.first_byte_at is None else outcome.first_byte_at - t.started
        upstream = (t.engine_done or now) - t.engine_started if t.engine_started else None
        overhead = max(0.0, latency - upstream) if upstream is not None else latency
        status = error.http_status if error is not None else (reply.status if reply is not None else 500)
        error_class = (
            (error.code or type(error).__name__)
            if error is not None
            else ("stream_interrupted" if outcome is not None and outcome.error else None)
        )
        record = UsageRecord(
            request_id=call.request_id, at=t.at, requested_model=call.model, key_id=t.who.key_id, user=t.user,
            served_model=served, provider=provider, instance=provider,
            attempts=by.attempts if by is not None else 0,
            fallback=by is not None and by.fallback is not None,
            streamed=call.stream, status=status, error_class=error_class, prompt_tokens=prompt,
            completion_tokens=completion, total_tokens=prompt + completion, tokens_estimated=estimated,
            cost_usd=cost, latency_ms=latency * 1000, ttft_ms=None if ttft is None else ttft * 1000,
            upstream_ms=None if upstream is None else upstream * 1000, overhead_ms=overhead * 1000,
            client_request_id=call.client_request_id, surface=surface_name(call),
        )  # fmt: skip
        if self.writer is not None:
            self.writer.submit(record)
        if self.metrics is not None:
            self.metrics.dec_in_flight()
            self.metrics.observe_request(
                model=call.model if reply is not None else "unknown", provider=provider or "none",
                status=status,
                streamed=call.stream, surface=record.surface or "", latency_s=latency, ttft_s=ttft,
                overhead_s=overhead, prompt_tokens=prompt, completion_tokens=completion, cost=cost,
                fallback=record.fallback,
            )  # fmt: skip
        if t.lease is not None:
            task = asyncio.create_task(t.lease.done(tokens=prompt + completion, cost=cost))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for outstanding lease settlements (on shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
