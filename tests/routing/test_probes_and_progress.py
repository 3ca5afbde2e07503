"""Active checks leave a deployment alone while its requests in flight make progress.

llama-cpp-python's server aborts the generation in progress when another request arrives
(``--interrupt_requests``, on by default), and ``GET /v1/models`` is such a request. So a
deployment whose streams are moving is not probed and not rediscovered (passive health covers
it), and a probe that times out while its streams move does not eject it. A deployment whose
requests are in flight but silent for long is probed as before.

The gateway is built with ``Gateway.create`` (the real wiring of engine, fleet, health checks
and discovery); its provider is replaced by a fake that counts probes and model listings and
whose stream the test feeds chunk by chunk. Time is the monitor's clock, moved by the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from corral.core.call import Attempt, Call, Endpoint, ModelInfo, Probe, Reply, Surface
from corral.core.streams import Relay
from corral.gateway import Gateway
from corral.routing.state import EJECTED, DeploymentState
from tests.support.gateway import make_config

NAME = "engine"


class FakeUpstream:
    """An OpenAI-type upstream: ``probe`` and ``list_models`` are counted; ``hang`` makes the
    probe wait forever (it then times out); each streamed reply yields what the test puts in
    ``feed``, and ends at None."""

    type = "openai"
    speaks = frozenset({Surface.OPENAI})  # the test's calls are OpenAI-surface calls: passed to send

    def __init__(self) -> None:
        self.name = NAME
        self.probes = 0
        self.listings = 0
        self.hang = False
        self.probing = asyncio.Event()  # a probe is waiting upstream now
        self.feed: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.answer = asyncio.Event()  # a non-streamed reply comes when this is set

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        if not call.stream:
            await self.answer.wait()
            return Reply(body=b"{}")
        return Reply(chunks=self._chunks(), content_type="text/event-stream")

    async def _chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.feed.get()) is not None:
            yield chunk

    async def probe(self) -> Probe:
        self.probes += 1
        if self.hang:
            self.probing.set()
            await asyncio.Event().wait()
        return Probe(ok=True, latency_ms=1.0)

    async def list_models(self) -> list[ModelInfo]:
        self.listings += 1
        return [ModelInfo(id="m", owned_by=NAME)]

    async def close(self) -> None:
        return None


class Clock:
    """The monitor's clock: real monotonic time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def config(**router: object) -> object:
    return make_config(
        {
            "providers": [{"name": NAME, "type": "openai", "base_url": "http://127.0.0.1:9/v1"}],
            "router": {"health_interval": 5, "health_timeout": 0.2, "failover_timeout": 5, **router},
            "server": {"discovery_interval": 60},
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@asynccontextmanager
async def gateway(clock: Clock, **router: object) -> AsyncIterator[tuple[Gateway, FakeUpstream]]:
    gw = Gateway.create(config(**router))  # type: ignore[arg-type]
    await gw.providers[NAME].close()
    fake = FakeUpstream()
    gw.providers[NAME] = fake  # type: ignore[assignment]  # the engine, health checks and discovery read this
    gw.health.clock = clock
    await gw.discovery.refresh_all()  # the catalog: the fake serves "m"
    assert fake.listings == 1
    try:
        yield gw, fake
    finally:
        await gw.close()


def call(stream: bool = True) -> Call:
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return Call(Endpoint.CHAT, body, b"", model="m", stream=stream, request_id="req-1")


async def streaming(gw: Gateway, fake: FakeUpstream) -> AsyncIterator[bytes]:
    """A streamed call in flight whose first chunk the client has read."""
    fake.feed.put_nowait(b"data: first\n\n")
    reply = await gw.engine.handle(call())
    assert reply.chunks is not None
    assert await anext(reply.chunks) == b"data: first\n\n"
    return reply.chunks


def state_of(gw: Gateway) -> DeploymentState:
    return gw.fleet.states[NAME]


# -- probes --------------------------------------------------------------------------------------


async def test_an_idle_deployment_is_probed(clock: Clock) -> None:
    async with gateway(clock) as (gw, fake):
        await gw.health.check(NAME)
        assert fake.probes == 1 and state_of(gw).last_check_ok is True


async def test_a_deployment_whose_stream_progresses_is_not_probed(clock: Clock) -> None:
    async with gateway(clock, failover_timeout=1) as (gw, fake):
        await gw.health.check(NAME)  # a first result, kept while the deployment is left alone
        chunks = await streaming(gw, fake)
        state = state_of(gw)
        assert state.in_flight == 1
        clock.offset = 4.0  # past the first token's deadline (1 s), within the window (5 s) of a chunk
        for n in range(3):
            state.last_progress -= 100.0  # as if the last chunk came long ago...
            fake.feed.put_nowait(b"data: more\n\n")
            assert await anext(chunks) == b"data: more\n\n"  # ...and now one arrives: a sign of life
            await gw.health.check(NAME)
            assert fake.probes == 1, f"probed while the stream progressed (round {n})"
        assert state.last_check_ok is True  # the last result is kept
        state.last_progress -= 100.0  # and when nothing arrives for longer than the window: probed
        await gw.health.check(NAME)
        assert fake.probes == 2
        fake.feed.put_nowait(None)
        with pytest.raises(StopAsyncIteration):
            await anext(chunks)
        assert state.in_flight == 0
        await gw.health.check(NAME)  # nothing in flight: probed
        assert fake.probes == 3


async def test_the_relay_notes_each_chunk_it_passes_on() -> None:
    async def inner() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b"):
            yield chunk

    state = DeploymentState(NAME, "openai")
    relay = Relay(inner(), first=b"0").report_to(state)
    got = []
    async for chunk in relay:
        got.append(chunk)
        assert time.monotonic() - state.last_progress < 1.0
        state.last_progress = 0.0
    assert got == [b"0", b"a", b"b"]


async def test_a_request_waiting_for_its_first_token_is_not_probed(clock: Clock) -> None:
    """Prompt processing sends nothing: until its first-token deadline the engine watches it."""
    async with gateway(clock, failover_timeout=30) as (gw, fake):
        handling = asyncio.create_task(gw.engine.handle(call()))
        await until(lambda: state_of(gw).in_flight == 1)
        clock.offset = 20.0  # silent for 20 s, longer than the window, within the 30 s deadline
        await gw.health.check(NAME)
        assert fake.probes == 0
        clock.offset = 31.0  # past its first-token deadline: the engine gives up on it anyway
        await gw.health.check(NAME)
        assert fake.probes == 1
        fake.feed.put_nowait(b"data: late\n\n")
        fake.feed.put_nowait(None)
        reply = await handling
        assert reply.chunks is not None
        assert [c async for c in reply.chunks] == [b"data: late\n\n"]


async def test_a_request_waiting_for_its_whole_reply_is_not_probed(clock: Clock) -> None:
    """A non-streamed answer sends nothing until it is whole: the request's own deadline
    (router.request_timeout, 600 s by default) watches it, and a probe would have to wait
    behind it on a one-at-a-time server."""
    async with gateway(clock) as (gw, fake):
        handling = asyncio.create_task(gw.engine.handle(call(stream=False)))
        await until(lambda: state_of(gw).in_flight == 1)
        clock.offset = 300.0  # long past the first-token timeout (5 s), within the request's 600 s
        await gw.health.check(NAME)
        assert fake.probes == 0
        fake.hang = True
        clock.offset = 601.0  # past the request's own deadline: probed (the probe hangs, times out)
        await gw.health.check(NAME)
        assert fake.probes == 1 and state_of(gw).status() == EJECTED
        fake.answer.set()
        assert (await handling).body == b"{}"


async def test_a_stalled_deployment_is_probed(clock: Clock) -> None:
    async with gateway(clock) as (gw, fake):
        chunks = await streaming(gw, fake)
        clock.offset = 60.0  # in flight, but nothing arrived for a minute: passive health sees nothing
        await gw.health.check(NAME)
        assert fake.probes == 1 and state_of(gw).in_flight == 1
        await chunks.aclose()  # type: ignore[attr-defined]
        assert state_of(gw).in_flight == 0


async def test_a_probe_timeout_while_the_stream_progresses_does_not_eject(clock: Clock) -> None:
    async with gateway(clock) as (gw, fake):
        chunks = await streaming(gw, fake)
        clock.offset = 60.0  # stalled: the probe goes out...
        fake.hang = True
        checking = asyncio.create_task(gw.health.check(NAME))
        await fake.probing.wait()
        clock.offset = 0.0
        fake.feed.put_nowait(b"data: more\n\n")  # ...and while it waits, the stream moves again
        assert await anext(chunks) == b"data: more\n\n"
        await checking  # timed out after health_timeout (0.2 s)
        state = state_of(gw)
        assert fake.probes == 1
        assert state.status() != EJECTED and state.consecutive_failures == 0 and state.ejections == 0
        assert state.routable(time.monotonic())
        await chunks.aclose()  # type: ignore[attr-defined]


async def test_a_probe_timeout_of_a_stalled_deployment_still_ejects(clock: Clock) -> None:
    async with gateway(clock) as (gw, fake):
        chunks = await streaming(gw, fake)
        clock.offset = 60.0
        fake.hang = True
        await gw.health.check(NAME)
        assert state_of(gw).status() == EJECTED
        assert "timed out" in (state_of(gw).last_error or "")
        await chunks.aclose()  # type: ignore[attr-defined]


async def test_a_probe_timeout_of_an_idle_deployment_still_ejects(clock: Clock) -> None:
    async with gateway(clock) as (gw, fake):
        fake.hang = True
        await gw.health.check(NAME)
        assert state_of(gw).status() == EJECTED


# -- discovery -----------------------------------------------------------------------------------


async def test_discovery_leaves_a_progressing_deployment_alone_and_keeps_its_catalog(clock: Clock) -> None:
    async with gateway(clock) as (gw, fake):
        chunks = await streaming(gw, fake)
        await gw.discovery.refresh_all()
        await gw.discovery.refresh(NAME)  # a refresh on a missing model too
        assert fake.listings == 1  # only the one before the stream
        assert [m.id for m in gw.catalog.models_of(NAME)] == ["m"]
        assert gw.discovery.status[NAME].ok
        clock.offset = 60.0  # stalled: rediscovered
        await gw.discovery.refresh_all()
        assert fake.listings == 2
        await chunks.aclose()  # type: ignore[attr-defined]
        clock.offset = 0.0
        await gw.discovery.refresh_all()  # idle: rediscovered
        assert fake.listings == 3


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for a condition of the gateway's own state (not for a length of time)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)
