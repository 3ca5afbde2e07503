"""Regression tests that go with the fixes of the control-plane findings
(``test_control_plane_attacks``), for the parts those attacks do not reach on their own: the
error middleware once an answer has begun, the per-key session cap and the full session table,
sessions' absolute lifetime, the shared body budget, the key-guess throttle's decay, the Host
allow-list, the negative cache of ``/api/show`` and its background asks, the playground's own
usage event, bounded JSON depth.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from corral.errors import ConfigError
from corral.http.control import HANDLER_ARGS, ControlHandler, control_middlewares
from tests.support.gateway import GatewayServer, make_config

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
