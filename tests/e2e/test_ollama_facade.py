"""corral as one big Ollama, driven by the official ollama Python client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import ollama
import pytest

from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

MSG = [{"role": "user", "content": "hello there friend"}]


@dataclass
class Big:
    gpu1: OllamaEmulator
    gpu2: OllamaEmulator
    vllm: OpenAIEmulator
    gw: GatewayServer

    def client(self, key: str | None = None) -> ollama.Client:
        return ollama.Client(host=self.gw.url, headers={"Authorization": f"Bearer {key or self.gw.key}"})


@pytest.fixture(scope="module")
def big() -> Iterator[Big]:
    gpu1 = OllamaEmulator(
        [
            {"name": "llama3.2"},
            {"name": "qwen3:0.6b", "capabilities": ["completion", "tools", "thinking"]},
            {"name": "nomic-embed-text", "capabilities": ["embedding"]},
        ]
    )
    gpu2 = OllamaEmulator([{"name": "llama3.2"}, {"name": "mistral"}])
    gpu1.loaded["llama3.2:latest"] = 4096
    vllm = OpenAIEmulator(["qwen2.5-coder-32b"])
    with ServerThread(gpu1.app) as s1, ServerThread(gpu2.app) as s2, ServerThread(vllm.app) as sv:
        config = make_config(
            {
                "providers": [
                    {"name": "gpu1", "type": "ollama", "base_url": s1.url, "keep_alive": "30m"},
                    {"name": "gpu2", "type": "ollama", "base_url": s2.url},
                    {"name": "vllm", "type": "openai", "base_url": sv.url + "/v1"},
                ],
                "models": [
                    {"name": "coder", "target": "vllm/qwen2.5-coder-32b"},
                    {"name": "resilient", "target": "gpu2/mistral", "fallbacks": ["coder"]},
                ],
                "router": {"health_interval": "60s"},
            }
        )
        with GatewayServer(config) as gw:
            gw.call(lambda: gw.gateway.health.check_all())
            yield Big(gpu1, gpu2, vllm, gw)


@pytest.fixture(autouse=True)
def _no_faults(big: Big) -> Iterator[None]:
    yield
    for emu in (big.gpu1, big.gpu2, big.vllm):
        emu.fault = None


def test_root_and_version_answer_like_ollama(big: Big) -> None:
    assert httpx.get(big.gw.url + "/").text == "Ollama is running"
    assert httpx.head(big.gw.url + "/").status_code == 200
    assert httpx.get(big.gw.url + "/api/version").json() == {"version": "0.12.10"}


def test_list_merges_the_fleet_with_instances(big: Big) -> None:
    models = {m.model: m for m in big.client().list().models}
    assert {
        "llama3.2:latest",
        "qwen3:0.6b",
        "nomic-embed-text:latest",
        "mistral:latest",
        "vllm/qwen2.5-coder-32b",
        "coder",
        "resilient",
    } <= set(models)
    raw = httpx.get(big.gw.url + "/api/tags", headers=big.gw.headers()).json()["models"]
    llama = [m for m in raw if m["name"] == "llama3.2:latest"]
    assert len(llama) == 1 and sorted(llama[0]["corral_instances"]) == ["gpu1", "gpu2"]
    assert llama[0]["details"]["family"] == "llama" and llama[0]["digest"]


def test_ps_shows_loaded_models_with_their_instance(big: Big) -> None:
    running = big.client().ps().models
    assert [m.model for m in running] == ["llama3.2:latest"]
    raw = httpx.get(big.gw.url + "/api/ps", headers=big.gw.headers()).json()["models"]
    assert raw[0]["corral_instance"] == "gpu1" and raw[0]["context_length"] == 4096


def test_show_from_an_instance_and_synthesised_for_openai_models(big: Big) -> None:
    shown = big.client().show("qwen3:0.6b")
    assert "thinking" in (shown.capabilities or [])
    assert shown.modelinfo and any(k.endswith(".context_length") for k in shown.modelinfo)
    synthetic = big.client().show("coder")
    assert synthetic.details and synthetic.details.format == "openai"
    with pytest.raises(ollama.ResponseError) as info:
        big.client().show("nope-model")
    assert info.value.status_code == 404


@pytest.mark.parametrize("stream", [False, True])
def test_chat_through_the_facade(big: Big, stream: bool) -> None:
    client = big.client()
    if stream:
        parts = list(client.chat(model="llama3.2", messages=MSG, stream=True))
        assert "".join(p.message.content or "" for p in parts) == "Echo: hello there friend"
        assert parts[-1].done and parts[-1].eval_count == 4
    else:
        resp = client.chat(model="llama3.2", messages=MSG)
        assert resp.message.content == "Echo: hello there friend" and resp.done and resp.eval_count == 4


@pytest.mark.parametrize("stream", [False, True])
def test_generate_through_the_facade(big: Big, stream: bool) -> None:
    client = big.client()
    if stream:
        text = "".join(
            p.response for p in client.generate(model="gpu2/mistral", prompt="once upon", stream=True)
        )
    else:
        text = client.generate(model="gpu2/mistral", prompt="once upon").response
    assert text == "Echo: once upon"


def test_embed_and_legacy_embeddings(big: Big) -> None:
    client = big.client()
    out = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) == 8
    legacy = client.embeddings(model="nomic-embed-text", prompt="a")
    assert list(legacy.embedding) == pytest.approx(out.embeddings[0])


def test_native_fields_reach_ollama_unchanged(big: Big) -> None:
    image = base64.b64encode(b"\x89PNG\r\n\x1a\nxx").decode()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "d",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    body = {
        "model": "gpu1/qwen3:0.6b",
        "stream": False,
        "think": True,
        "format": "json",
        "keep_alive": "1h",
        "options": {"temperature": 0.1, "num_ctx": 2048, "top_k": 7, "mirostat": 1},
        "tools": tools,
        "messages": [{"role": "user", "content": "look", "images": [image]}],
        "some_future_field": {"x": 1},
    }
    big.gpu1.strict = False  # a field and an option Ollama does not know: it ignores them, as must we
    # the emulator's qwen3 has no vision, and corral refuses images for it (as Ollama does): say it sees
    facts = big.gw.gateway.engine.fit.facts  # type: ignore[union-attr]
    facts.learn("gpu1", "qwen3:0.6b", ["completion", "tools", "thinking", "vision"], None)
    try:
        resp = httpx.post(big.gw.url + "/api/chat", json=body, headers=big.gw.headers())
    finally:
        big.gpu1.strict = True
    assert resp.status_code == 200 and resp.json()["done"] is True
    sent = big.gpu1.requests_to("/api/chat")[-1].json
    assert sent == {
        **body,
        "model": "qwen3:0.6b",
        "stream": True,
    }  # only the model (and upstream streaming) changed
    big.client().chat(model="gpu1/llama3.2", messages=MSG)
    assert (
        big.gpu1.requests_to("/api/chat")[-1].json["keep_alive"] == "30m"
    )  # the provider default fills a gap


@pytest.mark.parametrize("stream", [False, True])
def test_openai_type_model_through_api_chat(big: Big, stream: bool) -> None:
    client = big.client()
    if stream:
        parts = list(client.chat(model="coder", messages=MSG, stream=True))
        text = "".join(p.message.content or "" for p in parts)
        assert parts[-1].done
    else:
        resp = client.chat(model="coder", messages=MSG)
        text, _ = resp.message.content, resp.done
    assert text == "Echo: hello there friend"
    assert big.vllm.requests_to("/chat/completions")[-1].json["model"] == "qwen2.5-coder-32b"


def test_fallback_through_api_chat(big: Big) -> None:
    big.gpu2.fault = Fault("status", status=500, message="gpu2 broke")
    resp = httpx.post(
        big.gw.url + "/api/chat",
        headers=big.gw.headers(),
        json={"model": "resilient", "messages": MSG, "stream": False},
    )
    assert resp.status_code == 200 and resp.headers["x-corral-fallback"] == "coder"
    assert resp.json()["message"]["content"] == "Echo: hello there friend"


def test_errors_use_ollamas_shape(big: Big) -> None:
    resp = httpx.post(big.gw.url + "/api/chat", json={"model": "llama3.2", "messages": MSG})
    assert resp.status_code == 401 and set(resp.json()) == {"error"}
    with pytest.raises(ollama.ResponseError) as info:
        big.client().chat(model="no-such-model", messages=MSG)
    assert info.value.status_code == 404
    big.gpu1.fault = Fault("midstream_error", after_chunks=1, message="runner died")
    with pytest.raises(ollama.ResponseError, match="runner died"):
        list(big.client().chat(model="gpu1/llama3.2", messages=MSG, stream=True))


def test_pull_with_merged_progress(big: Big) -> None:
    progress = list(big.client().pull("phi4-mini", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[-1] == "success"
    assert any((p.total or 0) > 0 and p.completed for p in progress)
    assert "phi4-mini:latest" in big.gpu1.models and "phi4-mini:latest" in big.gpu2.models
    with httpx.stream(
        "POST", big.gw.url + "/api/pull?instance=gpu2", headers=big.gw.headers(), json={"model": "gemma3"}
    ) as resp:
        lines = [httpx.Response(200, content=line).json() for line in resp.iter_lines() if line]
    assert {line.get("instance") for line in lines[:-1]} == {"gpu2"}
    assert lines[-1]["status"] == "success" and "gemma3:latest" not in big.gpu1.models


def test_delete_and_copy_fan_out(big: Big) -> None:
    big.client().copy("mistral", "mistral-backup")
    assert "mistral-backup:latest" in big.gpu2.models and "mistral-backup:latest" not in big.gpu1.models
    big.client().delete("mistral-backup")
    assert "mistral-backup:latest" not in big.gpu2.models
    with pytest.raises(ollama.ResponseError) as info:
        big.client().delete("mistral-backup")
    assert info.value.status_code == 404


@pytest.mark.parametrize("path", ["/api/push", "/api/create", "/api/blobs/sha256:abc"])
def test_disk_writing_endpoints_are_refused(big: Big, path: str) -> None:
    resp = httpx.post(big.gw.url + path, json={"model": "x"}, headers=big.gw.headers())
    assert resp.status_code == 403 and "writes to the disks" in resp.json()["error"]
