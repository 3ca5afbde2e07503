"""Upstream failures become honest statuses that name the upstream and how it failed."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.emulators.common import Fault
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread, free_port

BODY = {"model": "x/llama3.2", "messages": [{"role": "user", "content": "hi"}]}


def gateway_for(url: str, **extra: object) -> GatewayServer:
    provider = {"name": "x", "type": "ollama", "base_url": url, **extra}
    return GatewayServer(make_config({"providers": [provider]}))


def post(gw: GatewayServer, body: dict = BODY) -> httpx.Response:  # type: ignore[type-arg]
    return httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.headers(), timeout=30)


def test_connection_refused_is_503_naming_the_upstream() -> None:
    port = free_port()
    with gateway_for(f"http://127.0.0.1:{port}") as gw:
        resp = post(gw)
    assert resp.status_code == 503
    err = resp.json()["error"]
    assert err["code"] == "upstream_unreachable"
    assert "Upstream 'x'" in err["message"] and f"127.0.0.1:{port}" in err["message"]


def test_hang_is_504_within_the_configured_timeout() -> None:
    emu = OllamaEmulator()
    with ServerThread(emu.app) as server, gateway_for(server.url, timeout="500ms") as gw:
        emu.fault = Fault("hang_before_headers", seconds=2.5)
        started = time.monotonic()
        resp = post(gw)
        elapsed = time.monotonic() - started
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
    assert elapsed < 2


def test_ollama_busy_is_503_with_ollamas_reason() -> None:
    emu = OllamaEmulator()
    with ServerThread(emu.app) as server, gateway_for(server.url) as gw:
        emu.fault = Fault("busy")
        resp = post(gw)
    assert resp.status_code == 503
    assert "server busy" in resp.json()["error"]["message"]


def test_upstream_500_is_502() -> None:
    emu = OllamaEmulator()
    with ServerThread(emu.app) as server, gateway_for(server.url) as gw:
        emu.fault = Fault("status", status=500, message="llama runner process has terminated")
        resp = post(gw)
    assert resp.status_code == 502
    assert "llama runner process has terminated" in resp.json()["error"]["message"]


def test_wrong_cloud_key_is_502_and_does_not_leak() -> None:
    emu = OllamaEmulator(api_key="the-right-key-000000")
    with ServerThread(emu.app) as server:
        config = make_config(
            {
                "providers": [
                    {"name": "x", "type": "ollama", "base_url": server.url, "api_key": "the-wrong-key-111111"}
                ]
            }
        )
        with GatewayServer(config) as gw:
            resp = post(gw)
            ready = httpx.get(gw.url + "/readyz")
    assert resp.status_code == 502 and "api_key" in resp.json()["error"]["message"]
    assert "the-wrong-key" not in resp.text and "the-right-key" not in resp.text
    # ready: corral itself serves (its admin API could fix the key); the upstream's state is reported
    assert ready.status_code == 200 and ready.json()["upstreams"] == "none_reachable"
    assert "key" not in ready.text


def test_stall_mid_stream_ends_with_an_error_event() -> None:
    emu = OllamaEmulator()
    with ServerThread(emu.app) as server, gateway_for(server.url, timeout="500ms") as gw:
        emu.fault = Fault("stall_midstream", seconds=2.5, after_chunks=1)
        started = time.monotonic()
        with httpx.stream(
            "POST",
            gw.v1 + "/chat/completions",
            headers=gw.headers(),
            json={**BODY, "stream": True},
            timeout=30,
        ) as resp:
            text = resp.read().decode()
        elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert "timed out mid-stream" in text and "[DONE]" not in text
    assert elapsed < 2


@pytest.mark.parametrize("check_host", [True])
def test_loopback_ollama_host_check_passes(check_host: bool) -> None:
    emu = OllamaEmulator(check_host=check_host)
    with ServerThread(emu.app) as server, gateway_for(server.url) as gw:
        assert post(gw).status_code == 200
    assert emu.requests_to("/api/chat")[-1].headers["host"] == f"127.0.0.1:{server.port}"
