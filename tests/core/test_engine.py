"""The engine on its own, with scripted providers: which deployment it tries, in what order, what
it records, what it frees, and what the caller gets (``Served``, the error of the last attempt
or the list of all of them); and where a pinned conversation goes when its deployment is full.

No test sleeps to synchronise: a test waits for a condition on the fleet's state (``until``), and
"at once" is a bound (``PROMPT``) far below the waits configured (30 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from corral.conversation.call import Attempt, Call, Endpoint, ModelInfo, Probe, Reply, Surface
from corral.core.engine import Engine
from corral.core.failures import AllAttemptsFailed
from corral.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from corral.routing import affinity
from corral.routing.capabilities import ModelFacts
from corral.routing.catalog import Catalog, ProviderEntry
from corral.routing.fit import Fit
from corral.routing.fleet import Fleet
from corral.routing.state import DeploymentState
from tests.support.gateway import make_config

HANG = "hang"
PROMPT = 2.0  # s: what must happen at once does within this (the waits configured are 30 s)


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

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        return await self.send(call, attempt)  # every call here is from a surface it speaks

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


# session affinity: a full pinned deployment -------------------------------------------------

WARM: dict[str, int | None] = {"m:latest": None}  # /api/ps: loaded, context not known


def affine(
    spill_below: int = 2048, b_loaded: dict[str, int | None] = WARM, b_priority: int = 0
) -> tuple[Engine, dict[str, DeploymentState], Scripted, Scripted]:
    """Ollama deployments a and b of one slot each, both warm unless ``b_loaded`` says; the
    affinity wait and the queue timeout are long, so a call that waits is seen waiting."""
    a, b = Scripted("a", [b"{}"]), Scripted("b", [b"{}"])
    cfg = make_config(
        f"""
providers:
  - {{name: a, type: openai, base_url: 'http://a.test/v1', models: [m]}}
  - {{name: b, type: openai, base_url: 'http://b.test/v1', models: [m]}}
models:
  - {{name: pool, targets: [a/m, b/m]}}
router:
  queue_timeout: 30s
  request_timeout: 60s
  affinity: {{wait: 30s, spill_below: {spill_below}}}
"""
    )
    states = [
        DeploymentState("a", "ollama", max_parallel=1, loaded=dict(WARM)),
        DeploymentState("b", "ollama", max_parallel=1, loaded=dict(b_loaded)),
    ]
    catalog = Catalog([ProviderEntry("a", "ollama"), ProviderEntry("b", "ollama", b_priority)], cfg.models)
    for name in ("a", "b"):
        catalog.update(name, [ModelInfo("m")])
    eng = Engine(catalog, {"a": a, "b": b}, Fleet(states, cfg.router), {})
    eng.affinity = affinity.build(cfg.router.affinity, {}, None)
    return eng, {s.name: s for s in states}, a, b


def turn(content: str = "hi", num_ctx: int | None = None) -> Call:
    """A turn of the conversation pinned to a (the pin is put before the first call)."""
    body: dict[str, Any] = {"model": "pool", "messages": [{"role": "user", "content": content}]}
    if num_ctx is not None:
        body["options"] = {"num_ctx": num_ctx}
    c = Call(Endpoint.CHAT, body, orjson.dumps(body), "pool", False, "req", Surface.OPENAI)
    c.session = "conversation-1"
    return c


def pin_to_a(eng: Engine) -> None:
    key = affinity.key_of(turn(), "pool")
    assert key is not None and eng.affinity is not None
    eng.affinity.pins.put(key, "a")


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(PROMPT):
        while not predicate():
            await asyncio.sleep(0)


async def test_a_short_prompt_spills_at_once_from_its_full_pinned_deployment() -> None:
    eng, states, a, _ = affine()
    pin_to_a(eng)
    states["a"].start(time.monotonic())  # a's one slot is busy, and stays busy: never freed here
    reply = await asyncio.wait_for(eng.handle(turn()), PROMPT)  # at once, not after the 30 s wait
    assert reply.served is not None and reply.served.provider == "b" and reply.served.attempts == 1
    assert reply.headers["x-corral-affinity"] == "spill" and a.calls == []
    assert eng.affinity is not None and eng.affinity.stats.spills == 1
    assert eng.fleet.queued("a") == 0 and states["a"].in_flight == 1 and states["b"].in_flight == 0
    # the pin followed: b holds the latest prefix, so the next turn is a hit there
    again = await asyncio.wait_for(eng.handle(turn("and then?")), PROMPT)
    assert again.served is not None and again.served.provider == "b"
    assert again.headers["x-corral-affinity"] == "hit" and eng.affinity.stats.spills == 1


async def test_a_pinned_deployment_with_a_free_slot_is_taken_even_for_a_short_prompt() -> None:
    eng, _, _, b = affine()
    pin_to_a(eng)
    reply = await eng.handle(turn())
    assert reply.served is not None and reply.served.provider == "a" and b.calls == []
    assert reply.headers["x-corral-affinity"] == "hit"


@pytest.mark.parametrize(
    ("setup", "content", "num_ctx"),
    [
        pytest.param({}, "word " * 2000, None, id="a long prompt"),  # ~2500 tokens: >= spill_below
        pytest.param({"b_loaded": {}}, "hi", None, id="b is cold"),
        pytest.param({"b_loaded": {"m:latest": 4096}}, "hi", 8192, id="b holds another num_ctx"),
        pytest.param({"b_priority": 1}, "hi", None, id="b is in a worse priority tier"),
        pytest.param({"spill_below": 0}, "hi", None, id="spill_below 0"),
    ],
)
async def test_otherwise_the_full_pinned_deployment_is_waited_for(
    setup: dict[str, Any], content: str, num_ctx: int | None
) -> None:
    eng, states, a, b = affine(**setup)
    pin_to_a(eng)
    states["a"].start(time.monotonic())
    task = asyncio.create_task(eng.handle(turn(content, num_ctx)))
    await until(lambda: eng.fleet.queued("a") == 1)  # waiting for a, with b free
    assert b.calls == [] and states["b"].in_flight == 0
    eng.fleet.release(states["a"])  # the turn before on a ends
    reply = await asyncio.wait_for(task, PROMPT)
    assert reply.served is not None and reply.served.provider == "a" and len(a.calls) == 1
    assert reply.headers["x-corral-affinity"] == "hit"
    assert eng.affinity is not None and eng.affinity.stats.spills == 0
