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

import pytest
from aiohttp import web

from corral.http.control import HANDLER_ARGS, ControlHandler, control_middlewares
from tests.support.gateway import make_config

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
