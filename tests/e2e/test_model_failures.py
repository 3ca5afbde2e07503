"""A model that fails on one instance marks that model there, not the instance: through a real
gateway, the official ollama client and two emulated Ollama instances."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import ollama
import pytest

from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


@pytest.fixture
def gpus() -> Iterator[tuple[OllamaEmulator, OllamaEmulator, GatewayServer]]:
    x, y = OllamaEmulator(), OllamaEmulator()
    with ServerThread(x.app) as sx, ServerThread(y.app) as sy:
        config = {
            "providers": [
                {"name": "x", "type": "ollama", "base_url": sx.url, "priority": 0},
                {"name": "y", "type": "ollama", "base_url": sy.url, "priority": 1},
            ],
            "models": [{"name": "m", "targets": ["x/llama3.2", "y/llama3.2"]}],
            "router": {"health_interval": "60s", "eject_after": 1, "eject_base": "60s"},
        }
        with GatewayServer(make_config(config)) as gw:
            yield x, y, gw


def chat(gw: GatewayServer, model: str, text: str, *where: OllamaEmulator) -> tuple[str, list[int]]:
    """The answer through the official ollama client (each text its own conversation), and how
    many chat requests each of ``where`` received for it."""
    before = [len(e.requests_to("/api/chat")) for e in where]
    client = ollama.Client(host=gw.url, headers=gw.headers(), timeout=20)
    answer = client.chat(model, messages=[{"role": "user", "content": text}])
    return str(answer.message.content), [
        len(e.requests_to("/api/chat")) - n for e, n in zip(where, before, strict=True)
    ]


def health(gw: GatewayServer) -> dict[str, dict[str, object]]:
    rows = httpx.get(gw.admin_url + "/admin/health", headers=gw.headers()).json()["deployments"]
    return {row["name"]: row for row in rows}


def test_a_model_failure_leaves_the_instance_serving_its_other_models(
    gpus: tuple[OllamaEmulator, OllamaEmulator, GatewayServer],
) -> None:
    x, y, gw = gpus
    x.model_faults["llama3.2"] = Fault("status", status=500, message="llama runner process has terminated")
    # x answered 500 for llama3.2: the next one answers
    assert chat(gw, "m", "first", x, y) == ("Echo: first", [1, 1])
    for text in ("second", "third"):  # llama3.2 is ejected on x: not even tried there
        assert chat(gw, "m", text, x, y) == (f"Echo: {text}", [0, 1])
    # x itself is healthy (eject_after is 1: an instance-level failure would have ejected it)
    assert chat(gw, "x/qwen3:0.6b", "other model", x, y) == ("Echo: other model", [1, 0])
    rows = health(gw)
    assert rows["x"]["state"] == "healthy" and rows["x"]["consecutive_failures"] == 0
    model = rows["x"]["models"]["llama3.2:latest"]  # type: ignore[index]
    assert model["state"] == "ejected" and model["failures"] == 1
    assert "llama runner process has terminated" in model["last_error"]
    marked = datetime.fromisoformat(model["since"])  # type: ignore[arg-type]
    assert abs((datetime.now(UTC) - marked).total_seconds()) < 60  # when it was marked failed
    assert rows["y"]["models"] == {}


def test_an_instance_failure_still_ejects_the_instance(
    gpus: tuple[OllamaEmulator, OllamaEmulator, GatewayServer],
) -> None:
    x, y, gw = gpus
    x.fault = Fault("status", status=502, message="bad gateway")  # a proxy in front of x: x is down
    assert chat(gw, "m", "first", x, y) == ("Echo: first", [1, 1])
    assert health(gw)["x"]["state"] == "ejected"
    assert chat(gw, "m", "second", x, y) == ("Echo: second", [0, 1])
