"""Session affinity shared through Redis: two gateways (as two replicas) on one Redis and key
prefix keep a conversation on one instance whichever gateway a turn reaches, and re-pin it when
that instance is killed. Redis comes from CORRAL_TEST_REDIS_URL (default 127.0.0.1:6379); the
test's own prefix's keys are deleted afterwards. Without Redis it is skipped with the reason,
except with CI=true: then it fails."""

from __future__ import annotations

import time

import openai
import redis

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture
from tests.support.servers import ServerThread


def _until(condition: object, what: str, timeout: float = 5.0) -> None:
    """Wait (bounded) for ``condition()``, polling: state in another thread, no event to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_two_gateways_share_pins_and_repin_when_the_instance_dies(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    emulators = [OllamaEmulator([{"name": "llama3.2"}]) for _ in range(3)]
    servers = [ServerThread(e.app, shutdown_timeout=0.2).start() for e in emulators]
    providers = "\n".join(
        f"  - {{name: gpu{i}, type: ollama, base_url: '{s.url}'}}" for i, s in enumerate(servers)
    )
    config = make_config(
        f"""
redis_url: "{url}"
providers:
{providers}
models:
  - {{name: chat, targets: [gpu0/llama3.2, gpu1/llama3.2, gpu2/llama3.2], strategy: least_busy}}
router: {{health_interval: 60s, eject_after: 1}}
"""
    )
    env = {"CORRAL_REDIS_PREFIX": prefix}
    try:
        with GatewayServer(config, env=env) as a, GatewayServer(config, env=env) as b:
            for gw in (a, b):
                shared = gw.gateway.engine.affinity.pins.shared  # type: ignore[union-attr]
                assert shared is not None
                _until(shared.listening.is_set, "the pin channel subscription")

            def ask(gw: GatewayServer, turn: int) -> tuple[str, str]:
                client = openai.OpenAI(base_url=gw.v1, api_key=gw.key, max_retries=0, timeout=20)
                raw = client.chat.completions.with_raw_response.create(
                    model="chat",
                    messages=[{"role": "user", "content": f"turn {turn}"}],
                    extra_headers={"x-corral-session": "shared-conversation"},
                )
                return raw.headers["x-corral-affinity"], raw.headers["x-corral-provider"]

            result, first = ask(a, 1)
            assert result == "miss"
            pins_b = b.gateway.engine.affinity.pins  # type: ignore[union-attr]
            _until(lambda: len(pins_b) == 1, "gateway b to hear of the pin")
            assert ask(b, 2) == ("hit", first)  # the other replica sends it to the same instance
            servers[int(first.removeprefix("gpu"))].stop()  # the pinned instance dies
            result, moved = ask(a, 3)
            assert result == "repin" and moved != first
            _until(lambda: list(pins_b.snapshot().values()) == [moved], "gateway b to hear of the re-pin")
            assert ask(b, 4) == ("hit", moved)
            client = redis.Redis.from_url(url)
            try:
                assert client.keys(f"{prefix}:affinity:*")  # written behind, under the prefix
            finally:
                client.close()
    finally:
        for s in servers:
            s.stop()
