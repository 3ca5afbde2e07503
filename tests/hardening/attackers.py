"""Hostile parties and helpers for the control-plane attack tests (``test_control_plane_attacks``).

``HostileOllama``: the Ollama emulator, but the pull progress lines are the test's.
``ForgingOpenAI``: an OpenAI-compatible upstream that streams exactly the bytes it is given.
``AttackerSite``: a web site on another origin; it serves the pages it is given and records
the ``Cookie`` header of every request it gets. ``playground_info``: how the console's
playground (``static/pages/playground.js``) reads the usage event out of a chat stream.
Helpers: the lone gateway, a frozen sign-in throttle, user keys, signed-in browser tabs, a
connection holding a partly sent body, a fake clock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from tests.console.browser import Console, chromium, missing
from tests.console.conftest import Stack
from tests.emulators.ollama import ModelSpec, OllamaEmulator
from tests.hardening.rawclient import RawConnection, request, wait_read
from tests.support.gateway import GatewayServer, make_config

LIMIT = 1024 * 1024  # server.max_request_bytes and max_buffered_bytes of the lone gateway
CSP_WATCH = """document.addEventListener('securitypolicyviolation', (e) => {
    (window.__violations = window.__violations || []).push(e.violatedDirective + ' ' + e.blockedURI); });"""


def nested(depth: int) -> Any:
    """A JSON value ``depth`` arrays deep: orjson reads up to 1024 levels, writes up to 254."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class HostileOllama(OllamaEmulator):
    """Answers a pull with ``pull_lines`` (any JSON objects) instead of real progress."""

    def __init__(self, pull_lines: list[dict[str, Any]], models: list[ModelSpec] | None = None) -> None:
        super().__init__(models)
        self.pull_lines = pull_lines

    def _pull_progress(self, spec: ModelSpec) -> Iterator[dict[str, Any]]:
        yield from self.pull_lines


class ForgingOpenAI:
    """One model, ``gpt-forged``; a streamed chat answer is ``stream`` as it is, byte for byte."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "gpt-forged", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self.stream)
        await response.write_eof()
        return response


class AttackerSite:
    """Pages by path (``pages["/x"] = html``); every request's Cookie header is kept in ``cookies``."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.cookies: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.Response:
        self.cookies.append(request.headers.get("Cookie", ""))
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(body=b"", content_type="image/png")
        return web.Response(text=page, content_type="text/html")


def playground_info(body: str) -> dict[str, Any] | None:
    """The usage object the playground page shows for a chat stream: the data of the last
    ``event: corral`` it parses, read line by line exactly as ``playground.js`` reads it."""
    info: dict[str, Any] | None = None
    event = "message"
    for raw in body.split("\n"):
        line = raw.rstrip()
        if line.startswith("event:"):
            event = line[6:].strip()
            continue
        if not line.startswith("data:"):
            if not line:
                event = "message"
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if event == "corral":
            info = chunk
    return info


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def lone_gateway(home: Path) -> Iterator[GatewayServer]:
    """A demo gateway of its own, for attacks that leave the sign-in throttle or the session
    table in a state other tests must not see; unauthenticated metrics; 1 MiB body budgets."""
    server = {"metrics_auth": False, "max_request_bytes": LIMIT, "max_buffered_bytes": LIMIT}
    with GatewayServer(make_config({"server": server}, demo=True), home=home) as gw:
        yield gw


@contextlib.contextmanager
def frozen_throttle(gw: GatewayServer) -> Iterator[None]:
    """Time stands still for the key-guess throttle (a wait never runs out) until the block ends;
    then 127.0.0.1's failures are forgotten and the clock runs again."""
    assert gw.app is not None
    throttle = gw.app.parts.throttle
    clock = throttle._clock
    throttle._clock = lambda: 0.0
    try:
        yield
    finally:
        throttle._clock = clock
        throttle.forget("127.0.0.1")


def user_key(where: Stack | GatewayServer, **fields: Any) -> tuple[str, str]:
    """A new user-scope key (``fields`` override): (key, id)."""
    gw = where.gateway if isinstance(where, Stack) else where
    body = {"name": "user", "scope": "user", **fields}
    resp = httpx.post(gw.admin_url + "/admin/keys", json=body, headers=gw.headers(), timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["key"], resp.json()["id"]


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def admin_console(browser: Any, gw: GatewayServer) -> Console:
    console = Console(browser, gw.admin_url)
    console.page.set_default_timeout(15_000)
    return console.sign_in(gw.key)


def whoami(console: Console) -> dict[str, Any]:
    """The console session the browser holds now, asked from the console's own origin as its page
    asks (with the CSRF token the page keeps)."""
    console.page.goto(console.base + "/console")
    found: dict[str, Any] = console.page.evaluate(
        "() => fetch('/console/session', "
        "{headers: {'X-CSRF-Token': localStorage.getItem('corral.csrf') || ''}}).then(r => r.json())"
    )
    return found


def stolen_cookie(headers: list[str]) -> str | None:
    """The console's session token in any of the Cookie headers another site received."""
    for header in headers:
        for cookie in header.split("; "):
            if cookie.startswith("corral_session="):
                return cookie.split("=", 1)[1]
    return None


def second_body_refused(port: int, path: str, key: str) -> tuple[int, bool]:
    """One connection holds most of a body just under ``LIMIT``; a second sends one as large.
    Returns (bytes the second got in, whether it was refused before the whole body)."""
    length = LIMIT - 64 * 1024
    head = request("POST", path, headers=f"Authorization: Bearer {key}\r\nContent-Length: {length}\r\n")
    with RawConnection(port) as first, RawConnection(port) as second:
        first.send(head + b" " * (length - 64 * 1024))
        wait_read(port, first.local_port)
        second.send(head)
        sent, _ = second.send_until_refused(b" " * 16384, length, port)
        return sent, sent < length


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def browser_or_skip() -> Iterator[Any]:
    """Chromium, or a skip that says what to install (a failure with CI=true)."""
    why = missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser attacks must run in CI: {why}", pytrace=False)
        pytest.skip(f"browser attacks skipped: {why}")
    with chromium() as browser:
        yield browser
