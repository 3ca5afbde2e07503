"""Adaptive first-token deadlines and hedging, through a real gateway, the official openai client
and emulated Ollama instances on loopback.

A warm instance that hangs after accepting is failed over in well under a second (its deadline
is a few times its recent warm p99, not the fixed 30 s); a cold load longer than the fixed
first-token timeout is not cut; a hedged pool takes the faster of a slow and a fast instance,
the slow one sees its connection closed, and usage records one request of two attempts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from corral.store.tables import usage
from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture
from tests.support.servers import ServerThread

USER = [{"role": "user", "content": "hello there"}]


def client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=gw.key, max_retries=0, timeout=30)


def ask(gw: GatewayServer, model: str, stream: bool) -> tuple[str, str, str]:
    """(content, provider, attempts) of one chat completion through the openai client."""
    raw = client(gw).chat.completions.with_raw_response.create(model=model, messages=USER, stream=stream)  # type: ignore[arg-type]
    parsed: Any = raw.parse()
    if stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in parsed if chunk.choices)
    else:
        text = parsed.choices[0].message.content
    return text, raw.headers["x-corral-provider"], raw.headers["x-corral-attempts"]


def eventually(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {timeout:g} s"
        time.sleep(0.02)


def pool(a: str, b: str, router: dict[str, object], **alias: object) -> dict[str, object]:
    return {
        "providers": [
            {"name": "a", "type": "ollama", "base_url": a, "priority": 0},
            {"name": "b", "type": "ollama", "base_url": b, "priority": 1},
        ],
        "models": [{"name": "m", "targets": ["a/llama3.2", "b/llama3.2"], **alias}],
        "router": {"health_interval": "60s", **router},
    }


@pytest.fixture
def two() -> Iterator[tuple[OllamaEmulator, OllamaEmulator, str, str]]:
    a, b = OllamaEmulator(), OllamaEmulator()
    with ServerThread(a.app, shutdown_timeout=0.2) as sa, ServerThread(b.app, shutdown_timeout=0.2) as sb:
        yield a, b, sa.url, sb.url


@pytest.mark.parametrize("stream", [False, True])
def test_a_hung_warm_instance_is_failed_over_in_under_a_second(
    two: tuple[OllamaEmulator, OllamaEmulator, str, str], stream: bool
) -> None:
    a, _, a_url, b_url = two
    # the fixed first-token timeout is 30 s: only the adaptive deadline can fail over in < 1 s
    with GatewayServer(make_config(pool(a_url, b_url, {"failover_timeout": "30s"}))) as gw:
        for _ in range(6):  # a is warm and has a history of fast first tokens
            assert ask(gw, "m", stream=True)[1] == "a"
        a.fault = Fault("hang_before_headers", seconds=30)  # accepts, then never answers
        started = time.monotonic()
        text, provider, attempts = ask(gw, "m", stream)
        elapsed = time.monotonic() - started
        assert (text, provider, attempts) == ("Echo: hello there", "b", "2")
        assert elapsed < 1.5, f"failed over after {elapsed:.2f} s"
        assert len(a.requests_to("/api/chat")) == 7  # a was tried first, and given up on


@pytest.mark.parametrize("stream", [False, True])
def test_a_cold_load_longer_than_the_fixed_timeout_is_not_cut(stream: bool) -> None:
    # The 20 s cold load, scaled: the load takes 2.5 s, 2.5 x the fixed first-token
    # timeout and 5 x the warm deadline's ceiling; the load allowance (5 min) covers it.
    slow = OllamaEmulator(load_seconds=2.5)
    with ServerThread(slow.app, shutdown_timeout=0.2) as server:
        config = {
            "providers": [{"name": "gpu", "type": "ollama", "base_url": server.url}],
            "router": {"failover_timeout": "1s", "first_token": {"max": "500ms"}, "health_interval": "60s"},
        }
        with GatewayServer(make_config(config)) as gw:
            started = time.monotonic()
            text, provider, attempts = ask(gw, "gpu/llama3.2", stream)
            assert time.monotonic() - started >= 2.5
            assert (text, provider, attempts) == ("Echo: hello there", "gpu", "1")
            assert "llama3.2:latest" in slow.loaded


def usage_rows(gw: GatewayServer) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        plane = gw.app.parts.control
        async with plane.store.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(usage))]

    return gw.call(fetch)  # type: ignore[no-any-return]


@pytest.mark.parametrize("stream", [False, True])
def test_hedging_takes_the_faster_instance_and_cancels_the_slower(
    two: tuple[OllamaEmulator, OllamaEmulator, str, str], stream: bool, tmp_path: Path
) -> None:
    a, b, a_url, b_url = two
    a.first_token_delay = 10.0  # a takes 10 s to its first token; b answers at once
    config = pool(a_url, b_url, {"failover_timeout": "30s"}, hedge_after="300ms")
    with GatewayServer(make_config(config), home=tmp_path) as gw:
        started = time.monotonic()
        text, provider, attempts = ask(gw, "m", stream)
        elapsed = time.monotonic() - started
        assert (text, provider, attempts) == ("Echo: hello there", "b", "2")
        assert 0.3 <= elapsed < 2.0, elapsed
        assert len(a.requests_to("/api/chat")) == 1 and len(b.requests_to("/api/chat")) == 1
        eventually(lambda: a.disconnects == 1, "seen by the slow instance as a disconnect")
        eventually(lambda: len(usage_rows(gw)) == 1, "recorded")
        (row,) = usage_rows(gw)
        assert row["attempts"] == 2 and row["provider"] == "b" and row["status"] == 200
        assert row["completion_tokens"] == 3  # "Echo: hello there": the winner's answer alone
        health = gw.call(lambda: _health(gw))
        assert health["a"] == 0 and health["b"] == 0  # both slots freed


@pytest.mark.parametrize("stream", [False, True])
def test_hedging_takes_a_slot_counted_across_the_fleet(
    two: tuple[OllamaEmulator, OllamaEmulator, str, str], stream: bool, redis_prefix: tuple[str, str]
) -> None:
    # with redis_url every worker shares max_parallel: the hedge's slot takes a round trip to Redis
    url, prefix = redis_prefix
    a, _, a_url, b_url = two
    a.first_token_delay = 10.0
    config = pool(a_url, b_url, {"failover_timeout": "30s"}, hedge_after="300ms")
    for provider in config["providers"]:  # type: ignore[union-attr]
        provider["max_parallel"] = 2
    config["redis_url"] = url
    with GatewayServer(make_config(config), env={"CORRAL_REDIS_PREFIX": f"{prefix}:"}) as gw:
        assert gw.gateway.fleet.shared is not None  # slots are counted in Redis
        started = time.monotonic()
        text, provider, attempts = ask(gw, "m", stream)
        elapsed = time.monotonic() - started
        assert (text, provider, attempts) == ("Echo: hello there", "b", "2")
        assert 0.3 <= elapsed < 2.0, elapsed
        eventually(lambda: a.disconnects == 1, "seen by the slow instance as a disconnect")
        eventually(lambda: gw.call(lambda: _health(gw)) == {"a": 0, "b": 0}, "both slots freed")


async def _health(gw: GatewayServer) -> dict[str, int]:
    return {name: s.in_flight for name, s in gw.gateway.fleet.states.items()}


def test_hedging_waits_for_nothing_when_the_first_answers_in_time(
    two: tuple[OllamaEmulator, OllamaEmulator, str, str],
) -> None:
    _, b, a_url, b_url = two
    with GatewayServer(make_config(pool(a_url, b_url, {}, hedge_after="2s"))) as gw:
        for _ in range(3):
            assert ask(gw, "m", stream=True)[1:] == ("a", "1")
        assert b.requests_to("/api/chat") == []


def test_hedge_after_a_quantile_uses_the_warm_first_token_history(
    two: tuple[OllamaEmulator, OllamaEmulator, str, str],
) -> None:
    a, _, a_url, b_url = two
    with GatewayServer(make_config(pool(a_url, b_url, {}, hedge_after="p95"))) as gw:
        for _ in range(6):  # until a has a history, a p95 hedge cannot fire
            assert ask(gw, "m", stream=True)[1:] == ("a", "1")
        a.first_token_delay = 10.0
        started = time.monotonic()
        assert ask(gw, "m", stream=True)[1:] == ("b", "2")
        assert time.monotonic() - started < 1.5
