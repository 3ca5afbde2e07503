"""Fixtures: emulated upstreams on loopback and a gateway in front of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

CLOUD_KEY = "ollama-cloud-secret-key-123456"
VLLM_KEY = "vllm-secret-key-abcdef"


@dataclass
class Fleet:
    ollama: OllamaEmulator
    ollama_server: ServerThread
    cloud: OllamaEmulator
    cloud_server: ServerThread
    vllm: OpenAIEmulator
    vllm_server: ServerThread
    gateway: GatewayServer

    def client(self, **kw: object) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.v1, api_key=self.gateway.key, max_retries=0, timeout=20, **kw
        )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    ollama = OllamaEmulator()
    cloud = OllamaEmulator(
        [
            {"name": "kimi-k2.5:cloud-base"},
            {"name": "gpt-oss:120b", "capabilities": ["completion", "tools", "thinking"]},
        ],
        api_key=CLOUD_KEY,
    )
    vllm = OpenAIEmulator(
        ["qwen2.5-coder-32b", "text-embedding-3-small"], api_key=VLLM_KEY, path_prefix="/prefix"
    )
    with ServerThread(ollama.app) as o, ServerThread(cloud.app) as c, ServerThread(vllm.app) as v:
        config = make_config(
            f"""
providers:
  - name: local
    type: ollama
    base_url: {o.url}
    keep_alive: 10m
    num_ctx: 8192
  - name: ollama-cloud
    type: ollama
    base_url: {c.url}
    api_key: os.environ/OLLAMA_API_KEY
    timeout: 60
  - name: vllm
    type: openai
    base_url: {v.url}/prefix/v1
    api_key: os.environ/VLLM_API_KEY
    headers: {{X-Client-ID: corral}}
models:
  - name: cloud-gpt
    target: ollama-cloud/gpt-oss:120b
  - name: coder
    target: vllm/qwen2.5-coder-32b
""",
            env={"OLLAMA_API_KEY": CLOUD_KEY, "VLLM_API_KEY": VLLM_KEY},
        )
        with GatewayServer(config) as gw:
            yield Fleet(ollama, o, cloud, c, vllm, v, gw)


@pytest.fixture(autouse=True)
def _reset_faults(fleet: Fleet) -> Iterator[None]:
    yield
    for emu in (fleet.ollama, fleet.cloud, fleet.vllm):
        emu.fault = None
        emu.model_faults.clear()
        emu.token_delay = 0.0
