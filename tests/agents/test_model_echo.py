"""Every surface answers with the model name the client sent (issue #13), as real Ollama does:
an alias answers as the alias, whichever upstream type served it (Ollama, OpenAI-compatible,
Anthropic, the demo), whole and streamed; the served model is in ``x-corral-model``.

Through a real gateway over the emulators; every ``"model"`` field of the answer is checked (each
line or event of a stream).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.emulators.anthropic import AnthropicEmulator
from tests.emulators.ollama import OllamaEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

# upstream type -> (the alias the client asks for, the model the upstream serves)
UPSTREAMS = {
    "ollama": ("fast", "llama3.2:latest"),
    "openai": ("coder", "qwen2.5-coder-32b"),
    "vllm_native": ("native", "qwen2.5-coder-32b"),  # OpenAI-type declaring messages and responses
    "anthropic": ("claude", "claude-haiku-4-5"),
    "demo": ("echoer", "echo"),
}
_MODEL = re.compile(rb'"model": ?"((?:[^"\\]|\\.)*)"')


def _chat(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "a b"}]}


# surface -> (path, body maker)
SURFACES: dict[str, tuple[str, Any]] = {
    "ollama_chat": ("/api/chat", _chat),
    "ollama_generate": ("/api/generate", lambda m, s: {"model": m, "stream": s, "prompt": "a b"}),
    "ollama_embed": ("/api/embed", lambda m, s: {"model": m, "input": "a b"}),
    "openai_chat": ("/v1/chat/completions", _chat),
    "openai_completions": ("/v1/completions", lambda m, s: {"model": m, "stream": s, "prompt": "a b"}),
    "openai_embeddings": ("/v1/embeddings", lambda m, s: {"model": m, "input": "a b"}),
    "messages": ("/v1/messages", lambda m, s: {**_chat(m, s), "max_tokens": 16}),
    "responses": ("/v1/responses", lambda m, s: {"model": m, "stream": s, "input": "a b"}),
}
EMBEDDINGS = {"ollama_embed", "openai_embeddings"}
# what an upstream type cannot answer at all (the Messages API has no completions or embeddings)
UNSERVED = {
    ("anthropic", s) for s in ("ollama_generate", "ollama_embed", "openai_completions", "openai_embeddings")
}


@dataclass
class Fleet:
    gateway: GatewayServer


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    ollama = OllamaEmulator()
    vllm = OpenAIEmulator(["qwen2.5-coder-32b"], responses=True, messages=True)
    claude = AnthropicEmulator()
    with ServerThread(ollama.app) as o, ServerThread(vllm.app) as v, ServerThread(claude.app) as a:
        config = make_config(
            f"""
providers:
  - name: local
    type: ollama
    base_url: {o.url}
  - name: vllm
    type: openai
    base_url: {v.url}/v1
  - name: vllm_native
    type: openai
    base_url: {v.url}/v1
    surfaces: [messages, responses]
  - name: hosted
    type: anthropic
    base_url: {a.url}
models:
  - name: fast
    target: local/llama3.2:latest
  - name: coder
    target: vllm/qwen2.5-coder-32b
  - name: native
    target: vllm_native/qwen2.5-coder-32b
  - name: claude
    target: hosted/claude-haiku-4-5
  - name: echoer
    target: demo/echo
  - name: vectors
    target: local/nomic-embed-text:latest
""",
            demo=True,
        )
        with GatewayServer(config) as gw:
            yield Fleet(gw)


CASES = [
    pytest.param(kind, surface, stream, id=f"{kind}-{surface}-{'stream' if stream else 'whole'}")
    for kind in UPSTREAMS
    for surface in SURFACES
    for stream in (False, True)
    if (kind, surface) not in UNSERVED and not (stream and surface in EMBEDDINGS)
]


@pytest.mark.parametrize(("kind", "surface", "stream"), CASES)
def test_the_answer_names_the_model_the_client_asked_for(
    fleet: Fleet, kind: str, surface: str, stream: bool
) -> None:
    alias, served = UPSTREAMS[kind]
    if kind == "ollama" and surface in EMBEDDINGS:
        alias, served = "vectors", "nomic-embed-text:latest"  # Ollama's chat models do not embed
    path, body = SURFACES[surface]
    r = httpx.post(
        fleet.gateway.url + path, json=body(alias, stream), headers=fleet.gateway.headers(), timeout=20
    )
    assert r.status_code == 200, r.text
    names = _MODEL.findall(r.content)
    assert names, r.text  # every answer names its model
    assert set(names) == {alias.encode()}, r.text
    if stream and surface.startswith("ollama"):
        assert len(names) == r.content.count(b"\n")  # every line
    assert r.headers["x-corral-model"] == served


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/v1/messages", "/v1/responses"])
@pytest.mark.parametrize("stream", [False, True])
def test_asked_for_by_the_upstreams_own_name_the_answer_keeps_it(
    fleet: Fleet, path: str, stream: bool
) -> None:
    """Nothing to rename (corral skips the work), and the answer still says the name asked for."""
    surface = next(name for name, (p, _) in SURFACES.items() if p == path)
    body = SURFACES[surface][1]("qwen2.5-coder-32b", stream)
    r = httpx.post(fleet.gateway.url + path, json=body, headers=fleet.gateway.headers(), timeout=20)
    assert r.status_code == 200, r.text
    assert set(_MODEL.findall(r.content)) == {b"qwen2.5-coder-32b"}, r.text
