"""Round trips: a LiteLLM config whose upstreams are emulators is converted, written, loaded as
`corral check` loads it, and served; requests sent to the LiteLLM model names reach the same
upstreams (the same model ids, the same keys) through corral, and the fallback chains work."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from string import Template

import httpx
import openai
import pytest

from corral.config.loader import load_config
from corral.migrate import convert_litellm
from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.migrate import configs
from tests.support.gateway import GatewayServer
from tests.support.servers import ServerThread

CLOUD_KEY = "ollama-cloud-key-0123456789"
OPENAI_KEY = "sk-openai-key-0123456789"
ENV = {
    "OLLAMA_API_KEY": CLOUD_KEY,
    "OPENAI_API_KEY": OPENAI_KEY,
    "LITELLM_MASTER_KEY": "sk-litellm-master-key-0123456789",
}


def serve(template: Template, tmp: Path, env: Mapping[str, str], **urls: str) -> GatewayServer:
    """Convert, write, load (as `corral check` does) and serve."""
    conversion = convert_litellm(template.substitute(urls), "litellm.yaml")
    assert conversion.problem is None, conversion.problem
    path = tmp / "corral.yaml"
    path.write_text(conversion.yaml_text())
    return GatewayServer(load_config(path, env=env))


def chat(gw: GatewayServer, model: str, text: str = "hello") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    response = httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.headers(), timeout=20)
    assert response.status_code == 200, response.text
    return response


def seen(emu: OllamaEmulator | OpenAIEmulator, path: str) -> list[tuple[str, str | None]]:
    """(model, Authorization) of each request the emulator got at ``path``."""
    return [(r.json["model"], r.headers.get("authorization")) for r in emu.requests if r.path == path]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def up(stack: ExitStack, emu: OllamaEmulator | OpenAIEmulator) -> str:
    return stack.enter_context(ServerThread(emu.app)).url


def test_ops_center_config(stack: ExitStack, tmp_path: Path) -> None:
    cloud = OllamaEmulator(
        [{"name": "kimi-k2.5"}, {"name": "gpt-oss:120b"}, {"name": "qwen3-coder:480b"}], api_key=CLOUD_KEY
    )
    oai = OpenAIEmulator(["gpt-4o"], api_key=OPENAI_KEY)
    gw = stack.enter_context(
        serve(configs.OPS_CENTER, tmp_path, ENV, cloud=up(stack, cloud), openai=up(stack, oai) + "/v1")
    )
    chat(gw, "kimi-k2.5")
    chat(gw, "qwen3-coder")
    assert seen(cloud, "/api/chat") == [
        ("kimi-k2.5", f"Bearer {CLOUD_KEY}"),
        ("qwen3-coder:480b", f"Bearer {CLOUD_KEY}"),
    ]
    client = openai.OpenAI(base_url=gw.v1, api_key=gw.key, max_retries=0)
    answer = client.chat.completions.create(
        model="openai-gpt4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "Echo: hi"
    assert seen(oai, "/v1/chat/completions") == [("gpt-4o", f"Bearer {OPENAI_KEY}")]

    cloud.model_faults["kimi-k2.5"] = Fault("status", status=500, message="model runner crashed", times=1)
    fell_back = chat(gw, "kimi-k2.5", "again")  # kimi-k2.5: [gpt-oss-120b]
    assert fell_back.headers["x-corral-model"] == "gpt-oss:120b"
    assert seen(cloud, "/api/chat")[-2:] == [
        ("kimi-k2.5", f"Bearer {CLOUD_KEY}"),
        ("gpt-oss:120b", f"Bearer {CLOUD_KEY}"),
    ]


def test_pool_config(stack: ExitStack, tmp_path: Path) -> None:
    gpus = [OllamaEmulator() for _ in range(3)]
    urls = {f"gpu{i + 1}": up(stack, emu) for i, emu in enumerate(gpus)}
    gw = stack.enter_context(serve(configs.POOLS, tmp_path, {}, **urls))
    served = {chat(gw, "llama3", f"n{i}").headers["x-corral-provider"] for i in range(6)}
    names = {f"ollama-local-{url.rsplit(':', 1)[1]}" for url in urls.values()}  # one per api_base
    assert served <= names and served
    gpus[0].model_faults["llama3.2"] = Fault("status", status=500, message="runner crashed", times=1)
    gpus[1].model_faults["llama3.2"] = Fault("status", status=500, message="runner crashed", times=1)
    assert chat(gw, "llama3", "failover").status_code == 200  # another deployment of the pool answered
    assert all(m == "llama3.2:latest" or m == "llama3.2" for emu in gpus for m, _ in seen(emu, "/api/chat"))
    embedded = httpx.post(
        gw.v1 + "/embeddings", json={"model": "embed", "input": "hi"}, headers=gw.headers(), timeout=20
    )
    assert embedded.status_code == 200, embedded.text
    assert [m for m, _ in seen(gpus[0], "/api/embed")] == ["nomic-embed-text"]


def test_azure_bedrock_config_serves_what_it_could_map(stack: ExitStack, tmp_path: Path) -> None:
    local, oai = OllamaEmulator(), OpenAIEmulator(["gpt-4o"], api_key=OPENAI_KEY)
    urls = {"ollama": up(stack, local), "openai": up(stack, oai) + "/v1"}
    gw = stack.enter_context(serve(configs.AZURE_BEDROCK, tmp_path, ENV, **urls))
    chat(gw, "gpt-4o")
    assert seen(oai, "/v1/chat/completions") == [("gpt-4o", f"Bearer {OPENAI_KEY}")]
    oai.model_faults["gpt-4o"] = Fault("status", status=503, message="overloaded", times=5)
    local_name = "ollama-local-" + urls["ollama"].rsplit(":", 1)[1]
    assert chat(gw, "gpt-4o", "x").headers["x-corral-provider"] == local_name  # gpt-4o: [.., local]
    missing = httpx.post(
        gw.v1 + "/chat/completions",
        json={"model": "claude-bedrock", "messages": [{"role": "user", "content": "x"}]},
        headers=gw.headers(),
    )
    assert missing.status_code == 404


def test_quickstart_config(stack: ExitStack, tmp_path: Path) -> None:
    oai, vllm = OpenAIEmulator(["gpt-3.5-turbo"], api_key=OPENAI_KEY), OpenAIEmulator(["facebook/opt-125m"])
    urls = {"openai": up(stack, oai) + "/v1", "vllm": up(stack, vllm) + "/v1"}
    gw = stack.enter_context(serve(configs.DOCS_QUICKSTART, tmp_path, ENV, **urls))
    chat(gw, "gpt-3.5-turbo")
    chat(gw, "vllm-model")
    assert seen(oai, "/v1/chat/completions") == [("gpt-3.5-turbo", f"Bearer {OPENAI_KEY}")]
    assert seen(vllm, "/v1/chat/completions") == [("facebook/opt-125m", "Bearer none")]


def test_hosted_prefixes_config(stack: ExitStack, tmp_path: Path) -> None:
    emu = OpenAIEmulator(
        [
            "llama-3.1-8b-instant",
            "gemini-2.0-flash",
            "Qwen/Qwen2.5-7B-Instruct",
            "anthropic/claude-3.5-sonnet",
        ]
    )
    base = up(stack, emu) + "/v1"
    names = ("groq", "mistral", "openrouter", "deepseek", "together", "fireworks", "gemini", "openai")
    urls = dict.fromkeys(names, "")
    urls.update({n: f"      api_base: {base}" for n in ("groq", "gemini", "openrouter")}, vllm=base)
    env = {f"{n}_API_KEY": f"key-{n}" for n in ("GROQ", "MISTRAL", "OPENROUTER", "DEEPSEEK", "TOGETHERAI")}
    env.update({f"{n}_API_KEY": f"key-{n}" for n in ("FIREWORKS", "GEMINI", "OPENAI")})
    gw = stack.enter_context(serve(configs.HOSTED, tmp_path, env, **urls))
    for model in ("llama-groq", "gemini-flash", "router-claude", "vllm-qwen"):
        chat(gw, model)
    assert seen(emu, "/v1/chat/completions") == [
        ("llama-3.1-8b-instant", "Bearer key-GROQ"),
        ("gemini-2.0-flash", "Bearer key-GEMINI"),
        ("anthropic/claude-3.5-sonnet", "Bearer key-OPENROUTER"),
        ("Qwen/Qwen2.5-7B-Instruct", None),
    ]


def test_router_docs_config(stack: ExitStack, tmp_path: Path) -> None:
    local, oai = OllamaEmulator(), OpenAIEmulator(["gpt-3.5-turbo", "gpt-3.5-turbo-16k"], api_key=OPENAI_KEY)
    urls = {"ollama": up(stack, local), "openai": up(stack, oai) + "/v1"}
    gw = stack.enter_context(serve(configs.ROUTER_DOCS, tmp_path, ENV, **urls))
    local_name = "ollama-local-" + urls["ollama"].rsplit(":", 1)[1]
    assert chat(gw, "gpt-3.5-turbo").headers["x-corral-provider"] == local_name  # the cheaper one
    assert chat(gw, "gpt-3.5").headers["x-corral-provider"] == local_name  # model_group_alias
    chat(gw, "gpt-3.5-turbo-16k")
    assert seen(oai, "/v1/chat/completions") == [("gpt-3.5-turbo-16k", f"Bearer {OPENAI_KEY}")]
    chat(gw, f"{local_name}/qwen3:0.6b")  # the wildcard's models, by their provider/model names
    assert [m for m, _ in seen(local, "/api/chat")] == ["llama3.2", "llama3.2", "qwen3:0.6b"]
