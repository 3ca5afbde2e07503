"""Failover through real sockets: faults injected into emulated upstreams, answers from the next tier."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread, free_port

USER = [{"role": "user", "content": "hello there"}]
BOUND = 5.0  # the promise: the answer comes from the next tier within 5 s


def chat(
    gw: GatewayServer, model: str, *, stream: bool = False, timeout: float = 30, **extra: object
) -> httpx.Response:
    body = {"model": model, "messages": USER, "stream": stream, **extra}
    with httpx.Client(timeout=timeout) as client:
        resp = client.post(gw.v1 + "/chat/completions", json=body, headers=gw.headers())
        resp.read()
        return resp


def content_of(resp: httpx.Response) -> str:
    if resp.headers["content-type"].startswith("text/event-stream"):
        import json

        text = ""
        for line in resp.text.splitlines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
        assert resp.text.rstrip().endswith("data: [DONE]")
        return text
    return str(resp.json()["choices"][0]["message"]["content"])


class Tiered:
    """An Ollama Cloud emulator with a local Ollama and a vLLM-like server behind it."""

    def __init__(self) -> None:
        self.cloud = OllamaEmulator(
            [{"name": "kimi-k2.5"}, {"name": "minimax-m2.5"}], api_key="cloud-key-0123456789"
        )
        self.local = OllamaEmulator([{"name": "qwen3:8b"}])
        self.vllm = OpenAIEmulator(["qwen2.5-coder-32b"])
        self.servers = [
            ServerThread(e.app, shutdown_timeout=0.2) for e in (self.cloud, self.local, self.vllm)
        ]

    def __enter__(self) -> Tiered:
        for s in self.servers:
            s.start()
        cloud, local, vllm = self.servers
        self.gw = GatewayServer(
            make_config(f"""
providers:
  - {{name: ollama-cloud, type: ollama, base_url: "{cloud.url}", api_key: "cloud-key-0123456789"}}
  - {{name: gpu, type: ollama, base_url: "{local.url}"}}
  - {{name: vllm, type: openai, base_url: "{vllm.url}/v1"}}
  - {{name: openai, type: openai, base_url: "http://127.0.0.1:{free_port()}/v1"}}
models:
  - name: cloud-kimi
    target: ollama-cloud/kimi-k2.5
    fallbacks: [cloud-minimax, vllm-qwen, ollama-qwen]
  - {{name: cloud-minimax, target: ollama-cloud/minimax-m2.5}}
  - {{name: vllm-qwen, target: vllm/qwen2.5-coder-32b}}
  - {{name: ollama-qwen, target: gpu/qwen3:8b}}
  - name: openai-gpt4o
    target: openai/gpt-4o
    explicit_only: true
router:
  default_fallbacks: [ollama-qwen]
  failover_timeout: 2s
  health_interval: 60s
""")
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gw.stop()
        for s in self.servers:
            s.stop()


@pytest.fixture
def tiers() -> Iterator[Tiered]:
    with Tiered() as t:
        yield t


@pytest.mark.parametrize("stream", [False, True])
def test_cloud_down_answer_comes_from_the_next_tier_within_5s(tiers: Tiered, stream: bool) -> None:
    tiers.servers[0].stop()  # Ollama Cloud is gone: connection refused
    started = time.monotonic()
    resp = chat(tiers.gw, "cloud-kimi", stream=stream)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200 and elapsed < BOUND
    assert content_of(resp) == "Echo: hello there"
    assert resp.headers["x-corral-provider"] == "vllm"
    assert resp.headers["x-corral-fallback"] == "vllm-qwen"
    assert resp.headers["x-corral-attempts"] == "3"  # kimi refused, minimax refused, vllm answered


@pytest.mark.parametrize("stream", [False, True])
def test_cloud_hangs_answer_comes_from_the_next_tier_within_5s(tiers: Tiered, stream: bool) -> None:
    tiers.cloud.fault = Fault("hang_before_headers", seconds=30)
    started = time.monotonic()
    resp = chat(tiers.gw, "cloud-kimi", stream=stream)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    assert content_of(resp) == "Echo: hello there"
    # kimi and then minimax (same cloud instance) each hit the 2 s first-token deadline; vllm answers
    assert resp.headers["x-corral-provider"] == "vllm" and resp.headers["x-corral-attempts"] == "3"
    assert elapsed < BOUND


def test_cloud_stalls_before_its_first_token(tiers: Tiered) -> None:
    tiers.cloud.fault = Fault("stall_midstream", after_chunks=0, seconds=30)
    started = time.monotonic()
    resp = chat(tiers.gw, "cloud-kimi", stream=True)
    assert resp.status_code == 200 and content_of(resp) == "Echo: hello there"
    assert time.monotonic() - started < BOUND


def test_mid_stream_failure_is_in_band_and_never_replayed(tiers: Tiered) -> None:
    tiers.cloud.fault = Fault("midstream_error", after_chunks=2, message="runner crashed")
    before = len(tiers.vllm.requests) + len(tiers.local.requests)
    resp = chat(tiers.gw, "cloud-kimi", stream=True)
    assert resp.status_code == 200
    assert "runner crashed" in resp.text and "[DONE]" not in resp.text
    assert len(tiers.vllm.requests) + len(tiers.local.requests) == before


def test_explicit_only_never_falls_back(tiers: Tiered) -> None:
    resp = chat(tiers.gw, "openai-gpt4o")
    assert resp.status_code == 503
    assert "x-corral-fallback" not in resp.headers
    assert tiers.local.requests_to("/api/chat") == []


def test_default_fallbacks_apply_to_provider_model_names(tiers: Tiered) -> None:
    tiers.servers[2].stop()
    resp = chat(tiers.gw, "vllm/qwen2.5-coder-32b")
    assert resp.status_code == 200 and resp.headers["x-corral-fallback"] == "ollama-qwen"


def test_every_attempt_failing_lists_each_without_secrets(tiers: Tiered) -> None:
    tiers.cloud.fault = Fault("status", status=500, message="boom")
    tiers.vllm.fault = Fault("status", status=500, message="vllm down")
    tiers.local.fault = Fault("busy")
    resp = chat(tiers.gw, "cloud-kimi")
    err = resp.json()["error"]
    assert resp.status_code == 502 and err["code"] == "all_attempts_failed"
    for piece in (
        "ollama-cloud (kimi-k2.5)",
        "ollama-cloud (minimax-m2.5)",
        "vllm (qwen2.5-coder-32b)",
        "gpu (qwen3:8b)",
        "server busy",
    ):
        assert piece in err["message"]
    assert "cloud-key" not in resp.text


def test_client_errors_are_not_retried_elsewhere(tiers: Tiered) -> None:
    tiers.cloud.fault = Fault("status", status=400, message="invalid options")
    resp = chat(tiers.gw, "cloud-kimi")
    assert resp.status_code == 400
    assert tiers.vllm.requests_to("/chat/completions") == []


# --- one pool, two instances: every fault kind moves the request to the healthy one ------------


def pool_gateway(a_url: str, b_url: str, b_type: str = "ollama", **router: object) -> GatewayServer:
    b_base = f"{b_url}/v1" if b_type == "openai" else b_url
    return GatewayServer(
        make_config(
            {
                "providers": [
                    {"name": "a", "type": "ollama", "base_url": a_url, "priority": 0},
                    {"name": "b", "type": b_type, "base_url": b_base, "priority": 1},
                ],
                "models": [{"name": "m", "targets": ["a/llama3.2", "b/llama3.2"]}],
                "router": {"failover_timeout": "1s", "health_interval": "60s", **router},
            }
        )
    )


@pytest.mark.parametrize(
    "fault",
    [
        Fault("busy"),
        Fault("status", status=429, message="quota"),
        Fault("status", status=500, message="x"),
        Fault("status", status=502, message="x"),
        Fault("hang_before_headers", seconds=10),
        Fault("drop_midstream", after_chunks=0),
    ],
    ids=lambda f: f"{f.kind}-{f.status}",
)
@pytest.mark.parametrize("stream", [False, True])
def test_pool_fails_over_on_each_fault(fault: Fault, stream: bool) -> None:
    a, b = OllamaEmulator(), OllamaEmulator()
    with (
        ServerThread(a.app, shutdown_timeout=0.2) as sa,
        ServerThread(b.app) as sb,
        pool_gateway(sa.url, sb.url) as gw,
    ):
        a.fault = fault
        started = time.monotonic()
        resp = chat(gw, "m", stream=stream)
        assert resp.status_code == 200, resp.text
        assert content_of(resp) == "Echo: hello there"
        assert resp.headers["x-corral-provider"] == "b" and resp.headers["x-corral-attempts"] == "2"
        assert time.monotonic() - started < 3


def test_pool_fails_over_on_refused_and_on_wrong_credentials() -> None:
    b = OllamaEmulator()
    with ServerThread(b.app) as sb, pool_gateway(f"http://127.0.0.1:{free_port()}", sb.url) as gw:
        assert chat(gw, "m").headers["x-corral-provider"] == "b"
    a, b = OllamaEmulator(api_key="right-key-000000"), OllamaEmulator()
    with ServerThread(a.app) as sa, ServerThread(b.app) as sb, pool_gateway(sa.url, sb.url) as gw:
        assert chat(gw, "m").headers["x-corral-provider"] == "b"
        health = httpx.get(gw.admin_url + "/admin/health", headers=gw.headers()).json()["deployments"]
        assert {d["name"]: d["state"] for d in health}["a"] == "misconfigured"
        assert chat(gw, "m").headers["x-corral-attempts"] == "1"  # a is skipped now


def test_repeated_failures_eject_and_a_passing_check_restores() -> None:
    a, b = OllamaEmulator(), OllamaEmulator()
    with (
        ServerThread(a.app) as sa,
        ServerThread(b.app) as sb,
        pool_gateway(sa.url, sb.url, eject_after=2) as gw,
    ):
        a.fault = Fault("status", status=502, message="x")  # a 500 marks only the model
        for i in range(2):  # two conversations (one would stay pinned to b after the first)
            turn = [{"role": "user", "content": f"first {i}"}]
            assert chat(gw, "m", messages=turn).headers["x-corral-attempts"] == "2"
        states = {
            d["name"]: d
            for d in httpx.get(gw.admin_url + "/admin/health", headers=gw.headers()).json()["deployments"]
        }
        assert states["a"]["state"] == "ejected" and states["a"]["ejected_for_s"] > 0
        before = len(a.requests_to("/api/chat"))
        assert chat(gw, "m").headers["x-corral-attempts"] == "1"
        assert len(a.requests_to("/api/chat")) == before  # ejected: not even tried
        a.fault = None
        gw.call(lambda: gw.gateway.health.check("a"))
        # this conversation stays where it was re-pinned (b); another one can reach a again
        served = {
            chat(gw, "m", messages=[{"role": "user", "content": f"other {i}"}]).headers["x-corral-provider"]
            for i in range(6)
        }
        assert "a" in served


def test_all_ejected_are_tried_anyway() -> None:
    a = OllamaEmulator()
    with ServerThread(a.app) as sa:
        config = make_config(
            {
                "providers": [{"name": "a", "type": "ollama", "base_url": sa.url}],
                "router": {"eject_after": 1, "health_interval": "60s"},
            }
        )
        with GatewayServer(config) as gw:
            a.fault = Fault("status", status=500, message="x", times=1)
            assert chat(gw, "a/llama3.2").status_code == 502
            assert chat(gw, "a/llama3.2").status_code == 200  # ejected, but the only one: tried anyway


def test_warm_instance_is_preferred_and_context_length_must_match() -> None:
    cold, warm = OllamaEmulator(), OllamaEmulator()
    warm.loaded["llama3.2:latest"] = 4096
    with ServerThread(cold.app) as sc, ServerThread(warm.app) as sw:
        config = make_config(
            {
                "providers": [
                    {"name": "cold", "type": "ollama", "base_url": sc.url},
                    {"name": "warm", "type": "ollama", "base_url": sw.url},
                ],
                "router": {"strategy": "warm", "health_interval": "60s"},
            }
        )
        with GatewayServer(config) as gw:
            gw.call(lambda: gw.gateway.health.check_all())
            served = {chat(gw, "ollama/llama3.2").headers["x-corral-provider"] for _ in range(10)}
            assert served == {"warm"}
            # now each instance holds the model at a different context length
            warm.loaded.clear()
            warm.loaded["llama3.2:latest"] = 8192
            cold.loaded.clear()
            cold.loaded["llama3.2:latest"] = 4096
            gw.call(lambda: gw.gateway.health.check_all())
            assert {
                chat(gw, "ollama/llama3.2", num_ctx=4096).headers["x-corral-provider"] for _ in range(8)
            } == {"cold"}
            assert {
                chat(gw, "ollama/llama3.2", num_ctx=8192).headers["x-corral-provider"] for _ in range(8)
            } == {"warm"}


def test_power_levels_by_model_and_header() -> None:
    a, b = OllamaEmulator(), OllamaEmulator()
    with ServerThread(a.app) as sa, ServerThread(b.app) as sb:
        config = make_config(
            {
                "providers": [
                    {"name": "small", "type": "ollama", "base_url": sa.url},
                    {"name": "big", "type": "ollama", "base_url": sb.url},
                ],
                "models": [
                    {"name": "tiny", "target": "small/llama3.2"},
                    {"name": "huge", "target": "big/llama3.2"},
                ],
                "router": {"power_levels": {"eco": ["tiny"], "precision": ["huge", "tiny"]}},
            }
        )
        with GatewayServer(config) as gw:
            assert chat(gw, "corral/eco").headers["x-corral-provider"] == "small"
            with httpx.Client() as client:
                resp = client.post(
                    gw.v1 + "/chat/completions",
                    json={"messages": USER},
                    headers={**gw.headers(), "x-corral-power": "precision"},
                )
            assert resp.status_code == 200 and resp.headers["x-corral-provider"] == "big"
            assert chat(gw, "corral/turbo").status_code == 404


@pytest.mark.timeout(120)
def test_instance_killed_and_restarted_during_1000_requests_loses_none() -> None:
    a, b = OllamaEmulator(token_delay=0.001), OllamaEmulator(token_delay=0.001)
    port = free_port()
    sa = ServerThread(a.app, port=port, shutdown_timeout=0).start()
    with ServerThread(b.app) as sb:
        config = make_config(
            {
                "providers": [
                    {"name": "a", "type": "ollama", "base_url": sa.url},
                    {"name": "b", "type": "ollama", "base_url": sb.url},
                ],
                "models": [{"name": "m", "targets": ["a/llama3.2", "b/llama3.2"], "strategy": "round_robin"}],
                "router": {
                    "failover_timeout": "2s",
                    "health_interval": "200ms",
                    "max_attempts": 4,
                    "retry_budget_min": 32,
                },
            }
        )
        with (
            GatewayServer(config) as gw,
            httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as client,
        ):

            def one(i: int) -> int:
                if i == 300:
                    sa.stop()
                if i == 650:
                    restarted.append(ServerThread(a.app, port=port).start())
                resp = client.post(
                    gw.v1 + "/chat/completions",
                    headers=gw.headers(),
                    json={"model": "m", "messages": [{"role": "user", "content": f"n {i}"}]},
                )
                return (
                    resp.status_code
                    if resp.json()["choices"][0]["message"]["content"] == f"Echo: n {i}"
                    else -1
                )

            restarted: list[ServerThread] = []
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(one, range(1000)))
            for s in restarted:
                s.stop()
    assert statuses.count(200) == 1000, {s: statuses.count(s) for s in set(statuses)}
    served_by_a_after = len(a.requests_to("/api/chat"))
    assert served_by_a_after > 0


def test_pinned_num_ctx_cannot_be_changed_by_clients() -> None:
    emu = OllamaEmulator()
    with ServerThread(emu.app) as server:
        config = make_config(
            {
                "providers": [{"name": "gpu", "type": "ollama", "base_url": server.url, "num_ctx": 4096}],
                "models": [{"name": "pinned", "target": "gpu/llama3.2", "num_ctx": 16384}],
            }
        )
        with GatewayServer(config) as gw:
            chat(gw, "pinned", num_ctx=2048, options={"num_ctx": 999})
            assert emu.requests_to("/api/chat")[-1].json["options"]["num_ctx"] == 16384
            chat(gw, "gpu/llama3.2", num_ctx=2048)  # not pinned: the client may choose
            assert emu.requests_to("/api/chat")[-1].json["options"]["num_ctx"] == 2048
            chat(gw, "gpu/llama3.2")  # the provider default
            assert emu.requests_to("/api/chat")[-1].json["options"]["num_ctx"] == 4096
