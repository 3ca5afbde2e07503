"""Every request corral translates for Ollama is one Ollama takes as meant.

OpenAI-shaped requests with the parameters real clients send go through corral to a strict
Ollama emulator, which refuses what Ollama refuses (wrong types: 400; bad options or format:
500) and also what Ollama would silently drop (options at the top level, unknown options or
fields): a translation that loses a setting fails here instead of passing unnoticed.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

IMAGE = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode()
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
ASKED = [{"role": "user", "content": "hi"}]

CHAT: dict[str, dict[str, Any]] = {
    "plain": {},
    "sampling": {"temperature": 0.2, "top_p": 0.9, "seed": 3, "max_tokens": 5, "stop": "x",
                 "frequency_penalty": 0.1, "presence_penalty": 0.2},
    "max_completion_tokens": {"max_completion_tokens": 4, "stop": ["a", "b"]},
    "native extras": {"top_k": 5, "num_ctx": 2048, "min_p": 0.05, "repeat_penalty": 1.1, "typical_p": 0.9,
                      "repeat_last_n": 64, "num_predict": 9},
    "options removed from Ollama": {"mirostat": 1, "mirostat_eta": 0.1, "mirostat_tau": 5.0},
    "effort none": {"reasoning_effort": "none"},
    "effort minimal": {"reasoning_effort": "minimal"},
    "reasoning object": {"reasoning": {"effort": "high"}},
    "json": {"response_format": {"type": "json_object"}},
    "schema": {"response_format": {"type": "json_schema",
                                   "json_schema": {"name": "x", "schema": {"type": "object"}}}},
    "text format": {"response_format": {"type": "text"}},
    "tools": {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": False},
    "image": {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": IMAGE}}]}]},
    "tool turns": {"messages": [
        {"role": "user", "content": "w"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]},
    "developer": {"messages": [{"role": "developer", "content": "be brief"},
                               {"role": "user", "content": "x"}]},
    "reasoning history": {"messages": [{"role": "user", "content": "a"},
                                       {"role": "assistant", "content": "b", "reasoning_content": "hmm"},
                                       {"role": "user", "content": "c"}]},
    "logprobs": {"logprobs": True, "top_logprobs": 2},
    "openai extras": {"user": "u1", "n": 1, "metadata": {"a": "b"}, "store": False, "service_tier": "auto"},
    "stream with usage": {"stream": True, "stream_options": {"include_usage": True}},
    "keep_alive string": {"keep_alive": "10m"},
    "keep_alive number": {"keep_alive": -1},
    "options object": {"options": {"num_ctx": 4096, "num_gpu": 1}},
    "think extra": {"think": True},
}  # fmt: skip
COMPLETIONS: dict[str, dict[str, Any]] = {
    "plain": {"prompt": "hi", "max_tokens": 3},
    "suffix": {"prompt": "def f(", "suffix": ")", "temperature": 0},
    "logprobs": {"prompt": "hi", "logprobs": 2},
    "stop": {"prompt": "hi", "stop": ["\n"]},
    "options removed from Ollama": {"prompt": "hi", "mirostat": 2},
}
EMBEDDINGS: dict[str, dict[str, Any]] = {
    "plain": {"input": "hello"},
    "list": {"input": ["a", "b"], "dimensions": 4},
    "base64": {"input": "a", "encoding_format": "base64"},
}
REMOVED = {"mirostat", "mirostat_eta", "mirostat_tau"}  # api: remove unused sampling parameters (#10581)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[OllamaEmulator, GatewayServer]]:
    emu = OllamaEmulator()
    assert emu.strict
    with ServerThread(emu.app) as server:
        config = make_config(
            {
                "providers": [
                    {"name": "gpu", "type": "ollama", "base_url": server.url, "keep_alive": "5m",
                     "num_ctx": 4096, "options": {"num_thread": 2}},
                ],
                # the emulator's qwen3 has no vision (corral refuses images for it, as Ollama does)
                "router": {"capabilities": {"gpu/qwen3:0.6b": ["completion", "tools", "thinking", "vision"]}},
            }
        )  # fmt: skip
        with GatewayServer(config) as gw:
            yield emu, gw


def post(gw: GatewayServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.v1 + path, json=body, headers=gw.headers(), timeout=20)


def accepted(resp: httpx.Response, emu: OllamaEmulator, path: str, before: int) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    sent = emu.requests_to(path)
    assert len(sent) == before + 1
    body = sent[-1].json
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("case", list(CHAT))
def test_chat_requests_are_valid_for_ollama(served: tuple[OllamaEmulator, GatewayServer], case: str) -> None:
    emu, gw = served
    before = len(emu.requests_to("/api/chat"))
    resp = post(gw, "/chat/completions", {"model": "gpu/qwen3:0.6b", "messages": ASKED, **CHAT[case]})
    sent = accepted(resp, emu, "/api/chat", before)
    assert not REMOVED & set(sent.get("options") or {})


@pytest.mark.parametrize("case", list(COMPLETIONS))
def test_completion_requests_are_valid_for_ollama(
    served: tuple[OllamaEmulator, GatewayServer], case: str
) -> None:
    emu, gw = served
    before = len(emu.requests_to("/api/generate"))
    resp = post(gw, "/completions", {"model": "gpu/llama3.2", **COMPLETIONS[case]})
    sent = accepted(resp, emu, "/api/generate", before)
    assert not REMOVED & set(sent.get("options") or {})


@pytest.mark.parametrize("case", list(EMBEDDINGS))
def test_embedding_requests_are_valid_for_ollama(
    served: tuple[OllamaEmulator, GatewayServer], case: str
) -> None:
    emu, gw = served
    before = len(emu.requests_to("/api/embed"))
    accepted(
        post(gw, "/embeddings", {"model": "gpu/nomic-embed-text", **EMBEDDINGS[case]}),
        emu,
        "/api/embed",
        before,
    )


def test_the_settings_arrive_where_ollama_reads_them(served: tuple[OllamaEmulator, GatewayServer]) -> None:
    emu, gw = served
    before = len(emu.requests_to("/api/chat"))
    body = {"model": "gpu/qwen3:0.6b", "messages": ASKED, **CHAT["sampling"]}
    sent = accepted(post(gw, "/chat/completions", body), emu, "/api/chat", before)
    assert sent["options"] == {
        "num_thread": 2, "num_ctx": 4096, "temperature": 0.2, "top_p": 0.9, "seed": 3, "num_predict": 5,
        "stop": ["x"], "frequency_penalty": 0.1, "presence_penalty": 0.2,
    }  # fmt: skip
    assert sent["keep_alive"] == "5m"
