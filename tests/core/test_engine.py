"""The engine on its own, with scripted providers: which deployment it tries, in what order, what
it records, what it frees, and what the caller gets (``Served``, the error of the last attempt
or the list of all of them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from corral.conversation.call import Attempt, Call, Endpoint, ModelInfo, Probe, Reply, Surface
from corral.core.engine import Engine
from corral.core.failures import AllAttemptsFailed
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from corral.routing.capabilities import ModelFacts
from corral.routing.catalog import Catalog, ProviderEntry
from corral.routing.fit import Fit
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState
from tests.support.gateway import make_config

HANG = "hang"


@dataclass
class Scripted:
    """A provider answering each call with the next step of its script: an exception to raise,
    a body, a list of stream chunks (an exception in it is raised at that point), or HANG."""

    name: str
    script: list[Any]
    type: str = "openai"
    speaks: frozenset[Surface] = frozenset({Surface.OPENAI})
    calls: list[Attempt] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)  # a call reached send()

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        self.calls.append(attempt)
        self.entered.set()
        step = self.script[min(len(self.calls), len(self.script)) - 1]
        if step == HANG:
            await asyncio.Event().wait()
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, bytes):
            return Reply(body=step)
        reply = Reply(content_type="text/event-stream")
        reply.chunks = self._stream(step, reply)
        return reply

    async def _stream(self, steps: list[Any], reply: Reply) -> AsyncIterator[bytes]:
        try:
            for piece in steps:
                if piece == HANG:
                    await asyncio.Event().wait()
                if isinstance(piece, BaseException):
                    raise piece
                if piece == "error":
                    reply.outcome.error = f"Upstream '{self.name}' broke the connection mid-stream."
                    yield b'data: {"error": {}}\n\n'
                    return
                yield piece
        finally:
            self.closed.append(True)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("m")]

    async def probe(self) -> Probe:
        return Probe(ok=True)

    async def close(self) -> None:
        return None


def engine(
    *providers: Scripted, aliases: str = "", router: str = ""
) -> tuple[Engine, dict[str, DeploymentState]]:
    names = [p.name for p in providers]
    listed = "\n".join(
        f"  - {{name: {n}, type: openai, base_url: 'http://{n}.test/v1', models: [m]}}" for n in names
    )
    cfg = make_config(
        f"""
providers:
{listed}
models:
  - name: pool
    targets: [{", ".join(f"{n}/m" for n in names if not n.startswith("spare"))}]
{aliases}
router:
  failover_timeout: 0.2
  request_timeout: 5
  retry_budget_min: 10
{router}
"""
    )
    states = [DeploymentState(n, "openai", 0, True) for n in names]
    # priorities in the order given: the first is tried first
    catalog = Catalog([ProviderEntry(n, "openai", i, True) for i, n in enumerate(names)], cfg.models, ())
    for n in names:
        catalog.update(n, [ModelInfo("m")])
    fleet = Fleet(states, cfg.router, None)
    return Engine(catalog, {p.name: p for p in providers}, fleet, {}), {s.name: s for s in states}


def call(model: str = "pool", *, stream: bool = False) -> Call:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return Call(Endpoint.CHAT, body, orjson.dumps(body), model, stream, "req", Surface.OPENAI)


def down(name: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(name, "is unreachable.", code="upstream_unreachable")


async def test_a_failed_deployment_is_left_for_the_next_and_recorded() -> None:
    a, b = Scripted("a", [down("a")]), Scripted("b", [b"{}"])
    eng, states = engine(a, b)
    reply = await eng.handle(call())
    assert reply.served is not None
    assert (reply.served.provider, reply.served.attempts, reply.served.fallback) == ("b", 2, None)
    assert len(a.calls) == 1 and states["a"].consecutive_failures == 1
    assert states["b"].consecutive_failures == 0
    assert states["a"].in_flight == states["b"].in_flight == 0


async def test_a_client_error_is_not_tried_elsewhere() -> None:
    a, b = Scripted("a", [UpstreamRejected("a", 400, "bad")]), Scripted("b", [b"{}"])
    eng, states = engine(a, b)
    with pytest.raises(UpstreamRejected):
        await eng.handle(call())
    assert b.calls == [] and states["a"].consecutive_failures == 0 and states["a"].in_flight == 0


async def test_a_capability_refusal_is_learned_and_routes_the_next_call() -> None:
    """An upstream's 400 naming a capability ("does not support tools") goes to the client as it
    is, and the next call that needs it goes to the deployment that was not refused."""
    refusal = UpstreamRejected("a", 400, '"m" does not support tools', capability="tools")
    a, b = Scripted("a", [refusal, b"{}"]), Scripted("b", [b"{}"])
    eng, states = engine(a, b)
    eng.fit = Fit(ModelFacts(), states, {}, {})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    body = {"model": "pool", "messages": [{"role": "user", "content": "hi"}], "tools": tools}

    def with_tools() -> Call:
        return Call(Endpoint.CHAT, dict(body), orjson.dumps(body), "pool", False, "req", Surface.OPENAI)

    with pytest.raises(UpstreamRejected):
        await eng.handle(with_tools())
    assert (len(a.calls), len(b.calls)) == (1, 0)
    reply = await eng.handle(with_tools())
    assert reply.served is not None and reply.served.provider == "b" and len(a.calls) == 1
    plain = await eng.handle(call())  # a call without tools may still go to a
    assert plain.served is not None and plain.served.provider == "a"


async def test_the_fallback_pool_answers_and_says_so() -> None:
    a, spare = Scripted("a", [down("a")]), Scripted("spare", [b"{}"])
    aliases = "  - {name: backup, target: spare/m}\n  - {name: main, target: a/m, fallbacks: [backup]}"
    eng, _ = engine(a, spare, aliases=aliases)
    reply = await eng.handle(call("main"))
    assert reply.served is not None and (reply.served.provider, reply.served.fallback) == ("spare", "backup")


async def test_a_stream_that_fails_before_its_first_chunk_fails_over() -> None:
    broken = UpstreamError(
        "a", "broke the connection before its first token.", code="upstream_stream_interrupted"
    )
    a, b = Scripted("a", [[broken]]), Scripted("b", [[b"data: 1\n\n"]])
    eng, states = engine(a, b)
    reply = await eng.handle(call(stream=True))
    assert reply.served is not None and reply.served.provider == "b"
    assert reply.chunks is not None and [c async for c in reply.chunks] == [b"data: 1\n\n"]
    assert a.closed == [True] and states["a"].in_flight == 0 and states["b"].in_flight == 0


async def test_no_first_token_in_time_fails_over() -> None:
    a, b = Scripted("a", [[HANG]]), Scripted("b", [[b"data: 1\n\n"]])
    eng, states = engine(a, b)
    reply = await eng.handle(call(stream=True))
    assert reply.served is not None and reply.served.provider == "b"
    assert states["a"].consecutive_failures == 1 and states["a"].in_flight == 0


async def test_the_only_deployment_timing_out_is_a_504_naming_it() -> None:
    eng, states = engine(Scripted("a", [[HANG]]))
    with pytest.raises(UpstreamTimeout) as info:
        await eng.handle(call(stream=True))
    assert info.value.code == "first_token_timeout" and "'a'" in info.value.message
    assert states["a"].in_flight == 0


async def test_a_mid_stream_failure_is_recorded_when_the_stream_ends() -> None:
    eng, states = engine(Scripted("a", [[b"data: 1\n\n", "error"]]))
    reply = await eng.handle(call(stream=True))
    assert states["a"].in_flight == 1  # the stream holds its slot
    assert reply.chunks is not None and len([c async for c in reply.chunks]) == 2
    assert states["a"].consecutive_failures == 1 and states["a"].in_flight == 0


async def test_a_stream_closed_early_frees_its_slot_and_is_no_failure() -> None:
    a = Scripted("a", [[b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]])
    eng, states = engine(a)
    reply = await eng.handle(call(stream=True))
    assert reply.chunks is not None
    await anext(reply.chunks)
    await reply.chunks.aclose()  # type: ignore[attr-defined]
    assert a.closed == [True] and states["a"].in_flight == 0 and states["a"].consecutive_failures == 0


async def test_a_cancelled_call_frees_its_slot() -> None:
    a = Scripted("a", [HANG])
    eng, states = engine(a)
    task = asyncio.create_task(eng.handle(call()))
    await a.entered.wait()
    assert states["a"].in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert states["a"].in_flight == 0


async def test_attempts_stop_at_max_attempts_and_all_are_listed() -> None:
    providers = [Scripted(n, [down(n)]) for n in ("a", "b", "c")]
    eng, _ = engine(*providers, router="  max_attempts: 2")
    with pytest.raises(AllAttemptsFailed) as info:
        await eng.handle(call())
    assert sum(len(p.calls) for p in providers) == 2
    assert "All 2 attempts" in info.value.message and info.value.http_status == 503


async def test_the_plan_follows_the_catalog() -> None:
    a = Scripted("a", [b"{}"])
    eng, _ = engine(a)
    await eng.handle(call("a/m"))
    eng.catalog.update("a", [ModelInfo("m"), ModelInfo("n")])  # a new catalog version: plans are redone
    reply = await eng.handle(call("n"))
    assert reply.served is not None and reply.served.model == "n"
