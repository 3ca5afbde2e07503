"""A live gateway with the control plane on each database, and an Ollama emulator to route to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.databases import *  # noqa: F403
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

YAML_SECRET = "sk-yaml-PLAINTEXT-0f1e2d3c4b5a69788796"


@dataclass
class Live:
    gw: GatewayServer
    http: httpx.Client  # keep-alive, master key, on the control plane
    upstream: str  # the Ollama emulator's URL
    emulator: OllamaEmulator
    database_url: str
    home: Path

    def chat(self, model: str, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.gw.key}"}
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(self.gw.v1 + "/chat/completions", json=body, headers=headers, timeout=20)


@pytest.fixture
def ollama() -> Iterator[tuple[OllamaEmulator, ServerThread]]:
    emulator = OllamaEmulator()
    with ServerThread(emulator.app) as server:
        yield emulator, server


def unthrottled(gw: GatewayServer) -> GatewayServer:
    """``gw`` with no limit on wrong keys from one address: these tests send thousands of them on
    purpose (every route, every hostile key), which the key-guess throttle would answer 429 after
    the fifth (that throttle is tested in tests/hardening)."""
    assert gw.app is not None
    gw.app.parts.throttle.free = 10**9
    return gw


def yaml_config(upstream: str) -> dict[str, object]:
    return {
        "providers": [{"name": "yaml-gpu", "type": "ollama", "base_url": upstream, "api_key": YAML_SECRET}],
        "models": [{"name": "chat", "target": "yaml-gpu/llama3.2"}],
    }


@pytest.fixture
def live(database_url: str, tmp_path: Path, ollama: tuple[OllamaEmulator, ServerThread]) -> Iterator[Live]:
    """A gateway (YAML provider 'yaml-gpu', alias 'chat', demo) with its store on each backend."""
    emulator, upstream = ollama
    config = make_config(yaml_config(upstream.url), demo=True)
    env = {"CORRAL_DATABASE_URL": database_url}
    with (
        GatewayServer(config, home=tmp_path, env=env) as gw,
        httpx.Client(base_url=gw.admin_url, headers=gw.headers(), timeout=20) as http,
    ):
        yield Live(gw, http, upstream.url, emulator, database_url, tmp_path)
