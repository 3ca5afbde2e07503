"""A client that goes away never leaks a deployment slot or an upstream connection.

Each test checks that its requests reached the upstream (the emulator recorded them) and that
the upstream saw the client's departure (corral closed the upstream call: the emulator counts
the answers cut short), so a request refused before routing (a wrong key: 401) cannot pass.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

LONG = 30  # seconds the emulator would take to stream its whole answer
WORDS = " ".join(f"w{i}" for i in range(LONG * 10))  # the emulator echoes them, one token per 0.1 s
BODY = {"model": "gpu/llama3.2", "stream": True, "messages": [{"role": "user", "content": WORDS}]}


def in_flight(gw: GatewayServer) -> int:
    rows = httpx.get(gw.admin_url + "/admin/health", headers=gw.headers()).json()["deployments"]
    return int(next(r["in_flight"] for r in rows if r["name"] == "gpu"))


def eventually(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    """Wait for a condition (polled), failing with ``what`` if it does not hold in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {timeout:g} s"
        time.sleep(0.02)


def wait_idle(gw: GatewayServer) -> None:
    eventually(lambda: in_flight(gw) == 0, "idle (a deployment slot leaked)")


def reached_and_cut(emu: OllamaEmulator, count: int) -> None:
    """``count`` generations reached the upstream, and each was cut short by the departure."""
    assert len(emu.requests_to("/api/chat")) == count, "the request never reached the upstream"
    # the stream would run for LONG s: cut short means corral closed the upstream call
    eventually(lambda: emu.disconnects == count, "seen upstream as a disconnect")
    assert emu.in_flight == 0


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
    emu, server = slow
    with server, gateway(server.url) as gw:
        for n in range(1, 4):
            with httpx.stream("POST", gw.v1 + "/chat/completions", json=BODY, headers=gw.headers()) as resp:
                assert resp.status_code == 200
                assert next(resp.iter_lines()).startswith("data: {")  # one event, then hang up
            wait_idle(gw)
            reached_and_cut(emu, n)
        short = {**BODY, "stream": False, "messages": [{"role": "user", "content": "a b c"}]}
        resp = httpx.post(gw.v1 + "/chat/completions", json=short, headers=gw.headers(), timeout=10)
        assert resp.status_code == 200  # the one slot (max_parallel 1) is free: within queue_timeout
        assert resp.json()["choices"][0]["message"]["content"]


def test_leaving_before_the_first_byte_frees_the_slot(slow: tuple[OllamaEmulator, ServerThread]) -> None:
    emu, server = slow
    emu.load_seconds = 1.0  # the first token comes late: the client leaves before it
    with server, gateway(server.url) as gw:
        for n in range(1, 4):
            emu.loaded.clear()  # each request loads the model again
            body = orjson.dumps(BODY)
            with socket.create_connection(("127.0.0.1", gw.port)) as sock:
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Authorization: Bearer {gw.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                eventually(lambda n=n: len(emu.requests_to("/api/chat")) == n, "sent upstream")
            wait_idle(gw)  # the client left while the upstream was still loading the model
            reached_and_cut(emu, n)
