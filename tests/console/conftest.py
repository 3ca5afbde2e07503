"""A real gateway (with its store) in front of two Ollama emulators and an OpenAI emulator, and
a spare Ollama emulator to add through the console; helpers to sign in over HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from corral.usage.writer import UsageWriter
from tests.emulators.ollama import ModelSpec, OllamaEmulator, default_models
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

XSS = "<img src=x onerror=alert(1)>"
OPENAI_KEY = "sk-openai-emulator-secret-0123456789"


@dataclass
class Stack:
    gpu_a: OllamaEmulator
    gpu_b: OllamaEmulator
    spare: OllamaEmulator
    spare_url: str
    openai: OpenAIEmulator
    gateway: GatewayServer
    home: Path

    @property
    def admin(self) -> str:
        return self.gateway.admin_url

    def key(self, **fields: object) -> tuple[str, str]:
        """Issue a gateway key (through the API, with the master key): (key, id)."""
        body = {"name": "test key", **fields}
        resp = httpx.post(self.admin + "/admin/keys", json=body, headers=self.gateway.headers(), timeout=10)
        assert resp.status_code == 201, resp.text
        return resp.json()["key"], resp.json()["id"]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` (every 20 ms) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        time.sleep(0.02)


def usage_written(stack: Stack) -> int:
    """Usage records the gateway's writer has committed so far."""
    assert stack.gateway.app is not None
    writer = stack.gateway.app.parts.accountant.writer
    assert isinstance(writer, UsageWriter)
    return writer.stats.written


def sign_in(base: str, key: str) -> tuple[httpx.Client, str]:
    """A client holding a console session (cookie) and its CSRF token."""
    client = httpx.Client(base_url=base, timeout=20)
    resp = client.post("/console/session", json={"key": key})
    assert resp.status_code == 200, resp.text
    return client, resp.json()["csrf"]


def config_text(a: str, b: str, o: str, price: tuple[float, float] = (150, 600)) -> str:
    return f"""
prices:
  gpt-4o-mini: {{input: {price[0]:g}, output: {price[1]:g}}}
providers:
  - name: gpu-a
    type: ollama
    base_url: {a}
    max_parallel: 4
  - name: gpu-b
    type: ollama
    base_url: {b}
  - name: openai
    type: openai
    base_url: {o}/v1
    api_key: {OPENAI_KEY}
models:
  - name: chat
    targets: [gpu-a/llama3.2, gpu-b/llama3.2]
    fallbacks: [openai/gpt-4o-mini]
  - name: flaky
    target: gpu-b/qwen3:0.6b
    fallbacks: [openai/gpt-4o-mini]
router:
  eject_base: 30  # a model marked failed stays marked while a test looks at the pages
  power_levels:
    eco: [chat]
"""


@contextlib.contextmanager
def running_stack(
    home: Path, *, price: tuple[float, float] = (150, 600), hostile: bool = True
) -> Iterator[Stack]:
    """The emulators and a gateway in front of them, until the block ends. The tests' stack
    prices gpt-4o-mini high (costs show at a glance) and serves a model whose name is markup
    (``hostile``); the screenshots' stack, what an operator would see, does neither."""
    gpu_a = OllamaEmulator([*default_models(), *([ModelSpec(XSS)] if hostile else [])])
    gpu_a.loaded = {"llama3.2:latest": 8192}
    gpu_b = OllamaEmulator()
    spare = OllamaEmulator([ModelSpec("gemma3:4b", family="gemma3", capabilities=["completion", "vision"])])
    openai = OpenAIEmulator(["gpt-4o-mini", "text-embedding-3-small"], api_key=OPENAI_KEY)
    with (
        ServerThread(gpu_a.app) as a,
        ServerThread(gpu_b.app) as b,
        ServerThread(spare.app) as s,
        ServerThread(openai.app) as o,
    ):
        config = make_config(config_text(a.url, b.url, o.url, price))
        with GatewayServer(config, home=home) as gw:
            yield Stack(gpu_a, gpu_b, spare, s.url, openai, gw, home)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("console-home")) as running:
        yield running
