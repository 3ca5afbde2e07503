"""A model ejected on one instance is ejected there for every gateway that shares the Redis key
prefix, within 1 s, while that instance keeps serving its other models through all of them.

Two gateways in-process (as two replicas), one Redis prefix of the test's own, two emulated
Ollama instances. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import ollama
import pytest

from corral.cluster.health import apply, snapshot
from corral.cluster.node import Cluster
from corral.config.schema import RouterConfig
from corral.routing.state import DeploymentState
from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture
from tests.support.servers import ServerThread

pytestmark = pytest.mark.timeout(120)
BOUND = 1.0  # seconds: the bound for shared health


def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; how long it took. Fails after ``timeout`` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def chat(gw: GatewayServer, model: str, text: str, *where: OllamaEmulator) -> tuple[str, list[int]]:
    """The answer, and how many chat requests each of ``where`` received for it."""
    before = [len(e.requests_to("/api/chat")) for e in where]
    client = ollama.Client(host=gw.url, headers=gw.headers(), timeout=20)
    answer = client.chat(model, messages=[{"role": "user", "content": text}])
    return str(answer.message.content), [
        len(e.requests_to("/api/chat")) - n for e, n in zip(where, before, strict=True)
    ]


def deployment(gw: GatewayServer, name: str) -> dict[str, object]:
    rows = httpx.get(gw.admin_url + "/admin/health", headers=gw.headers(), timeout=10).json()["deployments"]
    return next(row for row in rows if row["name"] == name)


def model_state(gw: GatewayServer, model: str) -> str | None:
    marks = deployment(gw, "x")["models"]
    assert isinstance(marks, dict)
    mark = marks.get(model)
    return None if mark is None else str(mark["state"])


@pytest.mark.redis
def test_a_model_ejected_through_one_gateway_is_ejected_on_the_other_within_1s(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    x, y = OllamaEmulator(), OllamaEmulator()
    with ServerThread(x.app) as sx, ServerThread(y.app) as sy:
        config = make_config(
            {
                "redis_url": url,
                "providers": [
                    {"name": "x", "type": "ollama", "base_url": sx.url, "priority": 0},
                    {"name": "y", "type": "ollama", "base_url": sy.url, "priority": 1},
                ],
                "models": [{"name": "m", "targets": ["x/llama3.2", "y/llama3.2"]}],
                "router": {"health_interval": "60s", "eject_after": 1, "eject_base": "60s"},
            }
        )
        env = {"CORRAL_REDIS_PREFIX": f"{prefix}:"}
        with GatewayServer(config, env=env) as a, GatewayServer(config, env=env) as b:
            for gw in (a, b):
                cluster = gw.gateway.cluster
                assert isinstance(cluster, Cluster)
                until(cluster.link.subscribed.is_set, 5, "the cluster channel subscription")
            assert chat(b, "m", "before", x, y) == ("Echo: before", [1, 0])  # b prefers x

            crash = "llama runner process has terminated"
            x.model_faults["llama3.2"] = Fault("status", status=500, message=crash)
            marked = time.monotonic()  # (the mark is made during this request, through a)
            assert chat(a, "m", "fails on x", x, y) == ("Echo: fails on x", [1, 1])
            until(lambda: model_state(b, "llama3.2:latest") == "ejected", 5, "b to see the mark")
            took = time.monotonic() - marked
            assert took < BOUND, f"b applied the mark {took:.2f} s after a made it"

            for gw in (a, b):  # neither sends llama3.2 to x any more; x serves its other models
                assert chat(gw, "m", "again", x, y) == ("Echo: again", [0, 1])
                assert chat(gw, "x/qwen3:0.6b", "other", x, y) == ("Echo: other", [1, 0])
                row = deployment(gw, "x")
                assert row["state"] == "healthy" and row["consecutive_failures"] == 0
            mark = deployment(b, "x")["models"]["llama3.2:latest"]  # type: ignore[index]
            assert mark["failures"] == 1 and crash in mark["last_error"]
            assert deployment(b, "y")["models"] == {}


def test_a_newer_mark_wins_and_a_snapshot_without_it_changes_nothing() -> None:
    cfg = RouterConfig(eject_base=60.0)
    here, there = DeploymentState("x", "ollama"), DeploymentState("x", "ollama")
    seen: list[str] = []
    here.observer = lambda state: seen.append(state.name)
    here.record_model_failure("llama3.2", time.monotonic(), "runner crashed", cfg)
    assert seen == ["x"]  # an ejection is published

    mono, wall = time.monotonic(), time.time()
    apply(there, snapshot(here, mono, wall), mono, wall)
    assert not there.model_usable("llama3.2", mono) and there.model_usable("qwen3", mono)
    assert there.models["llama3.2:latest"].last_error == "runner crashed"

    apply(here, snapshot(DeploymentState("x", "ollama"), mono, wall), mono, wall)  # e.g. a probe result
    assert not here.model_usable("llama3.2", mono)  # a snapshot that does not know the mark keeps it
    stale = snapshot(there, mono, wall)
    here.record_model_success("llama3.2")  # a recovery here, newer than the mark
    assert seen == ["x", "x"]
    apply(here, stale, mono, wall)
    assert here.model_usable("llama3.2", mono)  # the older mark does not undo it
    apply(there, snapshot(here, time.monotonic(), time.time()), time.monotonic(), time.time())
    assert there.model_usable("llama3.2", time.monotonic())  # and the recovery travels
    here.record_model_success("llama3.2")
    assert seen == ["x", "x"]  # a success with nothing to recover publishes nothing
