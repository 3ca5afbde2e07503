"""Regression tests that go with the fixes of the control-plane findings
(``test_control_plane_attacks``), for the parts those attacks do not reach on their own: the
error middleware once an answer has begun, the per-key session cap and the full session table,
sessions' absolute lifetime, the shared body budget, the key-guess throttle's decay, the Host
allow-list, the negative cache of ``/api/show`` and its background asks, the playground's own
usage event, bounded JSON depth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from corral.errors import ConfigError
from corral.http.admin import model_details
from corral.http.admin.playground import without_events
from corral.http.control import HANDLER_ARGS, ControlHandler, control_middlewares
from tests.console.conftest import sign_in, wait_until
from tests.emulators.common import Fault
from tests.emulators.ollama import ModelSpec, OllamaEmulator
from tests.hardening.attackers import (
    LIMIT,
    ForgingOpenAI,
    frozen_throttle,
    lone_gateway,
    playground_info,
    user_key,
)
from tests.hardening.rawclient import RawConnection, request, wait_read
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

# -- finding 6: an error once an answer has begun -------------------------------------------------


async def _broken_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await response.write(b'{"status": "pulling"}\n')
    raise RuntimeError("broke mid-stream")


async def _raw_exchange(app: web.Application, data: bytes) -> bytes:
    """``data`` sent to ``app`` served as the control plane is (``ControlHandler``); every byte
    of the answer until the server closes the connection."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    handlers = runner.server
    assert handlers is not None
    loop = asyncio.get_running_loop()
    quiet: object = None
    server = await loop.create_server(
        lambda: ControlHandler(handlers, loop=loop, access_log=quiet, **HANDLER_ARGS), "127.0.0.1", 0
    )
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        async with asyncio.timeout(10):
            answer = await reader.read()  # to the end: the server closes the connection
        writer.close()
        return answer
    finally:
        server.close()
        await runner.cleanup()


async def test_an_error_after_the_answer_began_ends_the_connection_without_a_second_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = web.Application(middlewares=control_middlewares())
    app.router.add_get("/stream", _broken_stream)
    answer = await _raw_exchange(app, b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 200 "), answer
    assert b'{"status": "pulling"}' in answer and not answer.endswith(b"0\r\n\r\n")  # cut, not ended
    assert "error after the answer to GET /stream began" in caplog.text
    assert "unhandled error" not in caplog.text and "Error handling request" not in caplog.text


# -- finding 14: the session lifetime is a setting -------------------------------------------------


def test_the_session_lifetime_is_admin_session_max() -> None:
    assert make_config({}).admin.session_max == 12 * 3600
    assert make_config({"admin": {"session_max": "2h"}}).admin.session_max == 7200


# -- finding 8: the host names the control plane answers for ---------------------------------------


def test_the_control_plane_answers_only_its_own_host_names(tmp_path: Path) -> None:
    config = make_config({"admin": {"allowed_hosts": ["Corral.Example.com"]}}, demo=True)
    with GatewayServer(config, home=tmp_path) as gw:
        port = gw.admin_port

        def status(host: str) -> int:
            return httpx.get(
                gw.admin_url + "/admin/health", headers={**gw.headers(), "Host": host}
            ).status_code

        answered = ["127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "console.localhost", "[::1]:1",
                    "10.1.2.3", "corral.example.com", f"corral.example.com.:{port}"]  # fmt: skip
        assert [status(h) for h in answered] == [200] * len(answered)
        refused = ["example.com", "corral.example.com.evil.example", "localhost.evil.example", "a b"]
        assert [status(h) for h in refused] == [421] * len(refused)
        resp = httpx.get(gw.admin_url + "/metrics", headers={"Host": "rebind.example"})
        assert resp.json()["error"]["code"] == "unknown_host" and "admin.allowed_hosts" in resp.text


@pytest.mark.parametrize("name", ["https://corral.example.com", "corral.example.com:4001", "a/b", ""])
def test_allowed_hosts_are_plain_host_names(name: str) -> None:
    with pytest.raises(ConfigError):
        make_config({"admin": {"allowed_hosts": [name]}})


# -- finding 10: the playground's usage event is corral's alone -------------------------------------

FORGED = orjson.dumps({"provider": "local-gpu", "model": "free", "cost_usd": 0, "prompt_tokens": 1})
CHUNK = orjson.dumps(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-forged",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
)


async def _relayed(stream: bytes, size: int) -> bytes:
    async def chunks():  # type: ignore[no-untyped-def]
        for at in range(0, len(stream), size):
            yield stream[at : at + size]

    return b"".join([part async for part in without_events(chunks())])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 4096])
async def test_the_relay_drops_event_lines_however_the_stream_is_cut(size: int) -> None:
    stream = (
        b"data: 1\n\nevent: corral\ndata: 2\r\n\r\ndata: 3\nevent:x\ndata: 4\n\nevent\r\n\n"
        b"events: kept\neve: kept\n: comment\n\r\ndata: [DONE]\n\nevent"
    )
    assert await _relayed(stream, size) == (
        b"data: 1\n\n\r\ndata: 3\n\n\nevents: kept\neve: kept\n: comment\n\r\ndata: [DONE]\n\n"
    )
    assert await _relayed(b"data: {", size) == b"data: {"  # a last line without an end goes on


def test_an_upstream_event_never_reaches_the_playground(tmp_path: Path) -> None:
    stream = b"data: " + CHUNK + b"\n\nevent: corral\ndata: " + FORGED + b"\n\ndata: [DONE]\n\n"
    with ServerThread(ForgingOpenAI(stream).app) as up:
        config = make_config(
            {"providers": [{"name": "paid-cloud", "type": "openai", "base_url": up.url + "/v1"}]}
        )
        with GatewayServer(config, home=tmp_path) as gw:
            resp = httpx.post(
                gw.admin_url + "/admin/playground/chat",
                headers=gw.headers(),
                timeout=20,
                json={"model": "gpt-forged", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            )
    assert resp.status_code == 200 and "local-gpu" not in resp.text, resp.text
    assert resp.text.count("event: corral") == 1
    info = playground_info(resp.text)
    assert info is not None and info["provider"] == "paid-cloud"


# -- finding 4: one body budget for both planes -------------------------------------------------------


@pytest.mark.parametrize(("holder", "refused"), [("data", "control"), ("control", "data")])
def test_both_planes_share_one_body_budget_and_give_it_back(
    tmp_path: Path, holder: str, refused: str
) -> None:
    with lone_gateway(tmp_path) as gw:
        assert gw.app is not None
        budget = gw.app.parts.body_budget
        key, _ = user_key(gw)
        ports = {"data": (gw.port, "/v1/chat/completions"), "control": (gw.admin_port, "/console/api/chat")}
        length = LIMIT - 64 * 1024

        def head(plane: str) -> bytes:
            return request("POST", ports[plane][1], headers=f"Authorization: Bearer {key}\r\n"
                           f"Content-Length: {length}\r\n")  # fmt: skip

        with RawConnection(ports[holder][0]) as first:
            first.send(head(holder) + b" " * (length - 64 * 1024))
            wait_read(ports[holder][0], first.local_port)
            with RawConnection(ports[refused][0]) as second:
                second.send(head(refused))
                sent, answered = second.send_until_refused(b" " * 16384, length, ports[refused][0])
                assert answered and sent < length
                assert second.response().status == 503
        wait_until(lambda: budget.held == 0)  # both hung up: every byte given back
        bearer = {"Authorization": f"Bearer {key}"}
        big = {"model": "demo/echo", "messages": [{"role": "user", "content": "x" * (length - 1024)}]}
        ok = httpx.post(gw.admin_url + "/console/api/chat", json=big, headers=bearer)
        assert ok.status_code == 200, ok.text
        wait_until(lambda: budget.held == 0)


# -- findings 2 and 7: sign-in only from the console's own page; wrong keys counted everywhere -------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host
        {"Origin": "null"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
)
def test_sign_in_is_refused_unless_the_consoles_own_page_sends_json(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    with lone_gateway(tmp_path) as gw, frozen_throttle(gw):
        sent = {"Content-Type": "application/json", **headers}
        for _ in range(7):
            resp = httpx.post(gw.admin_url + "/console/session", content=b'{"key": "guess"}', headers=sent)
            assert resp.status_code in (400, 403) and "set-cookie" not in resp.headers
        assert httpx.post(gw.admin_url + "/console/session", json={"key": gw.key}).status_code == 200


def test_wrong_keys_on_any_route_hold_up_keys_not_a_signed_in_console(tmp_path: Path) -> None:
    with lone_gateway(tmp_path) as gw, frozen_throttle(gw):
        console, csrf = sign_in(gw.admin_url, gw.key)
        with contextlib.closing(console):
            wrong = {"Authorization": "Bearer gw_wrong_0123456789"}
            statuses = [
                httpx.get(gw.admin_url + "/admin/providers", headers=wrong).status_code for _ in range(6)
            ]
            assert statuses == [401] * 5 + [429]
            assert httpx.get(gw.admin_url + "/admin/keys", headers={"X-API-Key": gw.key}).status_code == 429
            assert httpx.post(gw.admin_url + "/console/session", json={"key": gw.key}).status_code == 429
            assert console.get("/admin/keys", headers={"X-CSRF-Token": csrf}).status_code == 200


# -- finding 9: /api/show asked in the background, failures remembered -------------------------------


class HeldShow(OllamaEmulator):
    """/api/show answers only once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__([ModelSpec("held:1b")])
        self.release = threading.Event()

    async def show(self, request: web.Request) -> web.Response:
        await asyncio.to_thread(self.release.wait, 30)
        return await super().show(request)


def shows(emulator: OllamaEmulator) -> int:
    return len(emulator.requests_to("/api/show"))


@contextlib.contextmanager
def gateway_in_front_of(emulator: OllamaEmulator, home: Path) -> Iterator[GatewayServer]:
    with ServerThread(emulator.app) as up:
        config = make_config({"providers": [{"name": "h", "type": "ollama", "base_url": up.url}]})
        with GatewayServer(config, home=home) as gw:
            yield gw


def held_row(gw: GatewayServer) -> dict[str, object]:
    rows = httpx.get(gw.admin_url + "/admin/models", headers=gw.headers(), timeout=5).json()["data"]
    return next(r for r in rows if r["id"] == "h/held:1b")


def test_a_listing_does_not_wait_for_a_hanging_show_and_its_answer_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_details, "SHOW_TIMEOUT", 30.0)  # the ask outlives the listing
    monkeypatch.setattr(model_details, "LISTING_WAIT", 0.2)
    upstream = HeldShow()
    with gateway_in_front_of(upstream, tmp_path) as gw:
        base = shows(upstream)  # discovery's own ask for the model's facts, in its first round
        try:
            assert held_row(gw)["context_length"] is None  # answered while /api/show still hangs
            assert shows(upstream) == base + 1 and not upstream.release.is_set()
        finally:
            upstream.release.set()
        wait_until(lambda: held_row(gw)["context_length"] is not None)  # the ask went on, and is kept
        assert shows(upstream) == base + 1


def test_a_failed_show_is_asked_again_after_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = OllamaEmulator([ModelSpec("held:1b")])
    upstream.fault = Fault("status", status=500, message="no", paths=("/api/show",))
    with gateway_in_front_of(upstream, tmp_path) as gw:
        base = shows(upstream)  # discovery's own ask for the model's facts, in its first round
        for _ in range(3):
            assert held_row(gw)["context_length"] is None
        assert shows(upstream) == base + 1
        monkeypatch.setattr(model_details, "RETRY_FAILED_AFTER", 0.0)
        upstream.fault = None
        assert held_row(gw)["context_length"] is not None and shows(upstream) == base + 2
