"""A client that goes away never leaks a deployment slot or an upstream connection."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

BODY = {"model": "gpu/llama3.2", "stream": True, "messages": [{"role": "user", "content": "a b c d e f g h"}]}


def in_flight(gw: GatewayServer) -> int:
    rows = httpx.get(gw.admin_url + "/admin/health", headers=gw.headers()).json()["deployments"]
    return int(next(r["in_flight"] for r in rows if r["name"] == "gpu"))


def wait_idle(gw: GatewayServer, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while in_flight(gw) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert in_flight(gw) == 0


@pytest.fixture
def slow() -> tuple[OllamaEmulator, ServerThread]:
    emu = OllamaEmulator(token_delay=0.1)
    return emu, ServerThread(emu.app, shutdown_timeout=0.2)


def gateway(url: str) -> GatewayServer:
    return GatewayServer(
        make_config(
            {
                "providers": [{"name": "gpu", "type": "ollama", "base_url": url, "max_parallel": 1}],
                "router": {"queue_timeout": "1s", "health_interval": "60s"},
            }
        )
    )


def test_leaving_mid_stream_frees_the_slot(slow: tuple[OllamaEmulator, ServerThread]) -> None:
    _emu, server = slow
    with server, gateway(server.url) as gw:
        for _ in range(3):
            with httpx.stream("POST", gw.v1 + "/chat/completions", json=BODY, headers=gw.headers()) as resp:
                next(resp.iter_lines())  # one event, then hang up
            wait_idle(gw)
        started = time.monotonic()
        resp = httpx.post(gw.v1 + "/chat/completions", json={**BODY, "stream": False}, headers=gw.headers())
        assert resp.status_code == 200 and time.monotonic() - started < 3


def test_leaving_before_the_first_byte_frees_the_slot(slow: tuple[OllamaEmulator, ServerThread]) -> None:
    emu, server = slow
    emu.load_seconds = 0.5  # the first token comes late: the client leaves before it
    with server, gateway(server.url) as gw:
        for _ in range(3):
            body = orjson.dumps(BODY)
            with socket.create_connection(("127.0.0.1", gw.port)) as sock:
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Bearer {gw.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                time.sleep(0.1)
            wait_idle(gw)
