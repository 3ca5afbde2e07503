"""The Ollama emulator refuses the requests Ollama refuses, with Ollama's status and body shape.

Facts from ollama/ollama fb307609 (api/types.go, server/routes.go): a field of the wrong JSON
type, a bad ``think`` or ``keep_alive``, images that are not plain base64 and an /api/embed
``input`` that is not text are 400 at decoding; a known option of the wrong type and a bad
``format`` fail when the options are read (500). In strict mode the emulator also refuses with
400 what Ollama silently ignores: option names at the top level, unknown options and fields.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.servers import ServerThread

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode()
CHAT = {"model": "qwen3:0.6b", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
GENERATE = {"model": "llama3.2", "stream": False, "prompt": "hi"}
EMBED = {"model": "nomic-embed-text", "input": "hi"}


@pytest.fixture(scope="module")
def emu() -> Iterator[tuple[OllamaEmulator, str]]:
    emulator = OllamaEmulator()
    with ServerThread(emulator.app) as server:
        yield emulator, server.url


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=10)


def with_message(**fields: Any) -> dict[str, Any]:
    return {**CHAT, "messages": [{"role": "user", "content": "hi", **fields}]}


VALID = [
    ("/api/chat", CHAT),
    ("/api/chat", {**CHAT, "options": {"num_ctx": 2048, "temperature": 0, "stop": ["x"], "seed": 1.0,
                                       "use_mmap": False, "main_gpu": 0, "top_p": None}}),
    ("/api/chat", {**CHAT, "think": "low", "format": "json", "keep_alive": "1h30m", "tools": []}),
    ("/api/chat", {**CHAT, "think": False, "format": {"type": "object"}, "keep_alive": -1}),
    ("/api/chat", {**CHAT, "keep_alive": "0", "format": ""}),
    ("/api/chat", with_message(images=[PNG])),
    ("/api/chat", {**CHAT, "messages": [
        {"role": "user", "content": "w"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "ok", "tool_name": "f"},
    ]}),
    ("/api/generate", {**GENERATE, "images": [PNG], "raw": True, "system": "s", "think": False}),
    ("/api/embed", {**EMBED, "input": ["a", "b"], "dimensions": 4, "truncate": True}),
    ("/api/embeddings", {"model": "nomic-embed-text", "prompt": "hi", "keep_alive": "5m"}),
]  # fmt: skip

REFUSED = [
    # decoding (400): Go's encoding/json, ThinkValue, Duration, ImageData
    ("/api/chat", {**CHAT, "model": 7}, 400,
     "cannot unmarshal number into Go struct field ChatRequest.model"),
    ("/api/chat", {**CHAT, "messages": "hi"}, 400, "ChatRequest.messages"),
    ("/api/chat", {**CHAT, "stream": "no"}, 400, "ChatRequest.stream of type bool"),
    ("/api/chat", {**CHAT, "options": "num_ctx=1"}, 400, "ChatRequest.options"),
    ("/api/chat", {**CHAT, "tools": {"type": "function"}}, 400, "ChatRequest.tools"),
    ("/api/chat", with_message(content=[{"type": "text", "text": "hi"}]), 400,
     "cannot unmarshal array into Go struct field Message.messages.content of type string"),
    ("/api/chat", with_message(role=1), 400, "Message.messages.role"),
    ("/api/chat", with_message(images=[f"data:image/png;base64,{PNG}"]), 400,
     "illegal base64 data at input byte 4"),
    ("/api/chat", with_message(images=PNG), 400, "Message.messages.images"),
    ("/api/chat", {**CHAT, "messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": '{"a": 1}'}}]}]}, 400,
     "ToolCallFunction.messages.tool_calls.function.arguments"),
    ("/api/chat", {**CHAT, "think": "none"}, 400, 'invalid think value: "none"'),
    ("/api/chat", {**CHAT, "think": 1}, 400, "think must be a boolean or string"),
    ("/api/chat", {**CHAT, "keep_alive": "5"}, 400, 'time: invalid duration "5"'),
    ("/api/chat", {**CHAT, "keep_alive": True}, 400, "Unsupported type: 'bool'"),
    ("/api/chat", {**CHAT, "top_logprobs": 21}, 400, "top_logprobs must be between 0 and 20"),
    ("/api/generate", {**GENERATE, "prompt": ["a"]}, 400, "GenerateRequest.prompt"),
    ("/api/embed", {**EMBED, "dimensions": 1.5}, 400, "cannot unmarshal number 1.5 into Go struct field"),
    ("/api/embed", {**EMBED, "input": [1, 2]}, 400, "invalid input type"),
    # reading the options and the format (500)
    ("/api/chat", {**CHAT, "options": {"num_ctx": "8192"}}, 500, 'option "num_ctx" must be of type integer'),
    ("/api/chat", {**CHAT, "options": {"num_ctx": True}}, 500, 'option "num_ctx" must be of type integer'),
    ("/api/chat", {**CHAT, "options": {"temperature": "0.1"}}, 500,
     'option "temperature" must be of type float32'),
    ("/api/chat", {**CHAT, "options": {"stop": "x"}}, 500, 'option "stop" must be of type array'),
    ("/api/chat", {**CHAT, "options": {"stop": [1]}}, 500, 'option "stop" must be of an array of strings'),
    ("/api/chat", {**CHAT, "options": {"use_mmap": 1}}, 500, 'option "use_mmap" must be of type boolean'),
    ("/api/generate", {**GENERATE, "format": "yaml"}, 500, "invalid format"),
    # strict: what Ollama would ignore without a word (400 from the emulator)
    ("/api/chat", {**CHAT, "temperature": 0.1}, 400, "temperature must go inside 'options'"),
    ("/api/generate", {**GENERATE, "num_ctx": 4096}, 400, "num_ctx must go inside 'options'"),
    ("/api/chat", {**CHAT, "options": {"max_tokens": 5}}, 400, "unknown option 'max_tokens'"),
    ("/api/chat", {**CHAT, "options": {"mirostat": 1}}, 400, "unknown option 'mirostat'"),
    ("/api/chat", {**CHAT, "max_tokens": 5}, 400, "unknown field(s) max_tokens"),
    ("/api/chat", with_message(name="bob"), 400, "unknown message field(s) name"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), VALID)
def test_what_ollama_takes_is_taken(emu: tuple[OllamaEmulator, str], path: str, body: dict[str, Any]) -> None:
    resp = post(emu[1], path, body)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(("path", "body", "status", "message"), REFUSED)
def test_what_ollama_refuses_is_refused_as_ollama_does(
    emu: tuple[OllamaEmulator, str], path: str, body: dict[str, Any], status: int, message: str
) -> None:
    resp = post(emu[1], path, body)
    assert resp.status_code == status
    answer = resp.json()
    assert set(answer) == {"error"} and message in answer["error"], answer


def test_a_missing_model_is_still_404_and_decoding_comes_first(emu: tuple[OllamaEmulator, str]) -> None:
    assert post(emu[1], "/api/chat", {**CHAT, "model": "nope"}).status_code == 404
    # Ollama decodes before it looks the model up, and reads the options after
    assert post(emu[1], "/api/chat", {**CHAT, "model": "nope", "stream": "x"}).status_code == 400
    assert (
        post(emu[1], "/api/chat", {**CHAT, "model": "nope", "options": {"num_ctx": "x"}}).status_code == 404
    )


def test_without_strict_what_ollama_ignores_is_taken(emu: tuple[OllamaEmulator, str]) -> None:
    emulator, url = emu
    emulator.strict = False
    try:
        for body in (
            {**CHAT, "temperature": 0.1, "max_tokens": 5, "options": {"mirostat": 1}},
            with_message(name="bob"),
        ):
            assert post(url, "/api/chat", body).status_code == 200
        # what Ollama itself refuses is refused either way
        assert post(url, "/api/chat", {**CHAT, "options": {"num_ctx": "8192"}}).status_code == 500
        assert post(url, "/api/chat", {**CHAT, "think": "none"}).status_code == 400
    finally:
        emulator.strict = True
