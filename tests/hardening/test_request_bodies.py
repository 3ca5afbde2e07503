"""What corral forwards is the request it authorized, routed and priced.

Each test sends a hostile body through a real gateway in front of the Ollama and OpenAI
emulators and asserts on the body the emulator received (read the way the upstream reads it:
Go's rules for Ollama, see ``tests/support/godecode``), or on the refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.emulators.common import RecordedRequest
from tests.emulators.ollama import ModelSpec, OllamaEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.godecode import CHAT_REQUEST, first_wins, go_decode, top_level_keys
from tests.support.servers import ServerThread

CRLF_MODEL = "slow-x\r\nX-Injected: 1"


@dataclass
class Upstreams:
    ollama: OllamaEmulator
    ollama_url: str
    openai: OpenAIEmulator
    openai_url: str


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    ollama = OllamaEmulator([ModelSpec("cheap:latest"), ModelSpec("premium:latest")])
    openai = OpenAIEmulator(["ok-cheap", "ok-premium", CRLF_MODEL])
    with ServerThread(ollama.app) as o, ServerThread(openai.app) as v:
        yield Upstreams(ollama, o.url, openai, v.url)


def config(up: Upstreams) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "gpu", "type": "ollama", "base_url": up.ollama_url},
            {"name": "oa", "type": "openai", "base_url": up.openai_url + "/v1"},
            {"name": "evil", "type": "openai", "base_url": up.openai_url + "/v1"},
        ],
        "models": [
            {"name": "chat", "target": "gpu/cheap:latest", "num_ctx": 4096},
            {"name": "ok-premium", "target": "oa/ok-cheap"},
        ],
    }


@pytest.fixture
def gateway(upstreams: Upstreams, loop_kind: str) -> Iterator[GatewayServer]:
    with GatewayServer(make_config(config(upstreams), demo=True), loop=loop_kind) as gw:
        yield gw


def post(gw: GatewayServer, path: str, raw: bytes, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or gw.key}", "Content-Type": "application/json"}
    return httpx.post(gw.url + path, content=raw, headers=headers, timeout=30)


def received(requests: list[RecordedRequest], path: str, since: int) -> list[RecordedRequest]:
    return [r for r in requests[since:] if r.path == path]


def message_of(resp: httpx.Response) -> str:
    error = resp.json()["error"]
    return error if isinstance(error, str) else str(error["message"])


# 1. case-variant keys toward Ollama ------------------------------------------------------------

AUDIT_BODY = (
    b'{"model":"chat","options":{"num_ctx":4096},"messages":[{"role":"user","content":"hi"}],'
    b'"stream":false,"MODEL":"premium:latest","OPTIONS":{"num_ctx":131072}}'
)


def test_case_variant_keys_are_refused_for_a_key_limited_to_the_alias(
    upstreams: Upstreams, loop_kind: str, tmp_path: Path
) -> None:
    with GatewayServer(make_config(config(upstreams)), home=tmp_path, loop=loop_kind) as gw:
        made = httpx.post(
            gw.admin_url + "/admin/keys", json={"name": "cheap-only", "models": ["chat"]},
            headers=gw.headers(), timeout=20,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        since = len(upstreams.ollama.requests)
        resp = post(gw, "/api/chat", AUDIT_BODY, key)
        assert resp.status_code == 400, resp.text
        assert "'MODEL'" in message_of(resp) and "'model'" in message_of(resp)
        assert received(upstreams.ollama.requests, "/api/chat", since) == []
        # the same request without the shadowing keys goes through, and Ollama runs what was authorized
        plain = orjson.loads(AUDIT_BODY)
        del plain["MODEL"], plain["OPTIONS"]
        resp = post(gw, "/api/chat", orjson.dumps(plain), key)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-corral-model"] == "cheap:latest"
        [sent] = received(upstreams.ollama.requests, "/api/chat", since)
        seen = go_decode(sent.raw, CHAT_REQUEST)
        assert (seen["model"], seen["options"]["num_ctx"]) == ("cheap:latest", 4096)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (b'"Model":"premium:latest"', "'Model'"),
        (b'"\\u017ftream":true', "'\u017ftream'"),  # U+017F folds to s in Go: it would set stream
        (b'"\\u212aeep_alive":0', "'\u212aeep_alive'"),  # the Kelvin sign folds to k
        (b'"Options":{"num_ctx":131072}', "'Options'"),
        (b'"THINK":true', "'THINK'"),
    ],
)
def test_every_spelling_go_would_take_for_a_field_is_refused(
    gateway: GatewayServer, upstreams: Upstreams, extra: bytes, named: str
) -> None:
    since = len(upstreams.ollama.requests)
    raw = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":false,' + extra + b"}"
    resp = post(gateway, "/api/chat", raw)
    assert resp.status_code == 400, resp.text
    assert named in message_of(resp)
    assert received(upstreams.ollama.requests, "/api/chat", since) == []


def test_case_variant_option_is_refused(gateway: GatewayServer, upstreams: Upstreams) -> None:
    since = len(upstreams.ollama.requests)
    raw = (
        b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":false,'
        b'"options":{"num_ctx":4096,"NUM_CTX":131072}}'
    )
    resp = post(gateway, "/api/chat", raw)
    assert resp.status_code == 400, resp.text
    assert "'options.NUM_CTX'" in message_of(resp)
    assert received(upstreams.ollama.requests, "/api/chat", since) == []


def test_duplicate_keys_reach_ollama_once_as_corral_read_them(
    gateway: GatewayServer, upstreams: Upstreams
) -> None:
    # orjson and Go both keep the last duplicate, but Go merges two "options" objects (here
    # Ollama would load a 131072 context corral never saw) and other parsers keep the first:
    # corral forwards every key once, with the value it routed on.
    raw = (
        b'{"model":"premium:latest","options":{"num_ctx":131072,"seed":7},'
        b'"messages":[{"role":"user","content":"hi"}],"stream":true,'
        b'"model":"cheap:latest","options":{"temperature":0}}'
    )  # streamed and unpinned: nothing for corral to add, so the old code sent these very bytes
    since = len(upstreams.ollama.requests)
    resp = post(gateway, "/api/chat", raw)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-corral-model"] == "cheap:latest"
    [sent] = received(upstreams.ollama.requests, "/api/chat", since)
    keys = top_level_keys(sent.raw)
    assert len(keys) == len(set(keys)), keys
    for seen in (go_decode(sent.raw, CHAT_REQUEST), first_wins(sent.raw)):
        assert seen["model"] == "cheap:latest"
        assert seen["options"] == {"temperature": 0}


# 2. the model splice ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # the key the old splice found was '\"model' inside a message
        b'{"mod\\u0065l":"ok-premium","messages":[{"role":"user","content":"hi","\\"model":"x"}]}',
        # a plain and an escaped spelling of the same key: orjson keeps the last
        b'{"model":"ok-premium","messages":[{"role":"user","content":"hi"}],"mod\\u0065l":"ok-premium"}',
        b'{"model":"ok-premium","model":"ok-premium","messages":[{"role":"user","content":"hi"}]}',
    ],
)
def test_the_upstream_gets_the_model_corral_routed_and_priced(
    gateway: GatewayServer, upstreams: Upstreams, raw: bytes
) -> None:
    since = len(upstreams.openai.requests)
    resp = post(gateway, "/v1/chat/completions", raw)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-corral-model"] == "ok-cheap"
    [sent] = received(upstreams.openai.requests, "/v1/chat/completions", since)
    assert top_level_keys(sent.raw).count("model") == 1
    assert orjson.loads(sent.raw)["model"] == "ok-cheap"
    assert resp.json()["model"] == "ok-premium"  # the name asked for; x-corral-model names the one that ran


def test_a_duplicate_model_key_is_not_forwarded_when_the_name_is_unchanged(
    gateway: GatewayServer, upstreams: Upstreams
) -> None:
    # bare 'ok-cheap' routes to oa's 'ok-cheap': same name, so the old code forwarded the raw
    # bytes, where a first-wins parser reads 'ok-premium'
    raw = b'{"model":"ok-premium","messages":[{"role":"user","content":"hi"}],"model":"ok-cheap"}'
    since = len(upstreams.openai.requests)
    resp = post(gateway, "/v1/chat/completions", raw)
    assert resp.status_code == 200, resp.text
    [sent] = received(upstreams.openai.requests, "/v1/chat/completions", since)
    assert top_level_keys(sent.raw).count("model") == 1
    assert first_wins(sent.raw)["model"] == "ok-cheap"


# 3. JSON amplification --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_a_body_of_empty_objects_is_refused_before_parsing(
    gateway: GatewayServer, upstreams: Upstreams, path: str
) -> None:
    head = b'{"model":"chat","messages":['
    count = (32 * 1024 * 1024 - len(head) - 8) // 3
    raw = head + b"{}," * count + b"{}]}"
    assert len(raw) <= 32 * 1024 * 1024
    since = len(upstreams.ollama.requests)
    resp = post(gateway, path, raw)
    assert resp.status_code == 413, resp.text[:300]
    message = message_of(resp)
    assert "16 times" in message and "fewer, larger values" in message
    assert received(upstreams.ollama.requests, path, since) == []


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_large_ordinary_bodies_still_go_through(gateway: GatewayServer, path: str) -> None:
    text = "a fairly ordinary sentence, with a comma or two. " * 40
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}  # fmt: skip
    result = orjson.dumps({"temperature": 22, "unit": "celsius", "readings": list(range(50))}).decode()
    turns = [{"role": "user", "content": text}, {"role": "tool", "content": result}] * 1800
    raw = orjson.dumps({"model": "demo/echo", "messages": turns, "tools": [tool] * 2000, "stream": False})
    assert len(raw) > 4 * 1024 * 1024
    resp = post(gateway, path, raw)
    assert resp.status_code == 200, resp.text[:300]


# 4. and 5. model names --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_a_model_name_over_the_limit_is_refused(gateway: GatewayServer, path: str) -> None:
    raw = orjson.dumps({"model": "gpu/" + "x" * 1024 * 1024, "messages": [{"role": "user", "content": "hi"}]})
    resp = post(gateway, path, raw)
    assert resp.status_code == 400, resp.text[:300]
    assert "'model'" in message_of(resp) and "256" in message_of(resp)


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
@pytest.mark.parametrize(
    "model", [f"evil/{CRLF_MODEL}", "evil/slow-x\x00", "evil/slow-x\x7f", "evil/x\u2028y"]
)
def test_control_characters_in_a_model_name_are_a_400(gateway: GatewayServer, path: str, model: str) -> None:
    raw = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False})
    resp = post(gateway, path, raw)
    assert resp.status_code == 400, resp.text[:300]
    assert "'model'" in message_of(resp)
    assert "x-injected" not in resp.headers


@pytest.mark.parametrize(
    "content",
    [[{"type": "text", "text": 5}], [{"type": "text", "text": None}], [5, {"type": "text", "text": "ok"}]],
)
def test_demo_content_parts_of_the_wrong_type_are_a_400(gateway: GatewayServer, content: Any) -> None:
    raw = orjson.dumps({"model": "demo/echo", "messages": [{"role": "user", "content": content}]})
    resp = post(gateway, "/v1/chat/completions", raw)
    assert resp.status_code == 400, resp.text[:300]
    assert "messages[0].content" in message_of(resp)


# 6. strategy names as other gateways spell them ---------------------------------------------------


def test_a_pool_configured_with_another_gateways_strategy_name_routes_by_it(
    upstreams: Upstreams, loop_kind: str
) -> None:
    data = config(upstreams)
    data["providers"].append({"name": "gpu-b", "type": "ollama", "base_url": upstreams.ollama_url})
    data["models"].append(
        {"name": "rr", "targets": ["gpu/cheap:latest", "gpu-b/cheap:latest"], "strategy": "round-robin"}
    )
    data["router"] = {"strategy": "least-connections"}
    with GatewayServer(make_config(data), loop=loop_kind) as gw:
        assert gw.config.router.strategy == "least_busy"
        assert next(m for m in gw.config.models if m.name == "rr").strategy == "round_robin"
        # four conversations: one conversation would stay where its first turn went (affinity)
        raw = '{"model":"rr","messages":[{"role":"user","content":"hi %d"}],"stream":false}'
        served = [post(gw, "/api/chat", (raw % i).encode()).headers["x-corral-provider"] for i in range(4)]
    assert served in (["gpu", "gpu-b"] * 2, ["gpu-b", "gpu"] * 2)
