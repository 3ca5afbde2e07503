"""Hostile upstreams behind a real gateway: what corral reads from an upstream is bounded.

A raw upstream (``tests/httpclient/rawserver.RawServer`` on its own thread and loop) answers
discovery and health like Ollama or an OpenAI-compatible server, then answers the generation
request with exact, hostile bytes: an answer that never ends, one endless line, or a trailer
bomb after the last chunk. The client must get a 502 naming the provider and the limit (or, once
a stream has started, the in-band error of its surface and never a success marker), the
gateway must close the upstream connection (the upstream sees it go before it could write
``MOST`` bytes: without the limits it would have written them all), and the deployment's failure
must be recorded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from corral.core.discovery import MAX_MODELS
from tests.httpclient.rawserver import Conn, RawServer, Request, answer
from tests.support.gateway import GatewayServer, make_config

pytestmark = pytest.mark.timeout(60)

MAX_RESPONSE = 1024 * 1024
MAX_LINE = 64 * 1024
# More than the limit plus every socket buffer between the two (net.ipv4.tcp_wmem and tcp_rmem
# at most 4 + 32 MiB here): an upstream that wrote all of it was read without a limit.
MOST = 48 * 1024 * 1024
CLIENT_TIMEOUT = 20.0
MODEL = "m"

ANSWER_LIMIT = (
    f"Upstream 'local' sent an answer over max_response_bytes ({MAX_RESPONSE} bytes); "
    "raise providers[].max_response_bytes if that is expected."
)
LINE_LIMIT = (
    f"Upstream 'local' sent a stream line over max_line_bytes ({MAX_LINE} bytes); "
    "raise providers[].max_line_bytes if that is expected."
)
EVENT_LIMIT = (
    f"Upstream 'local' sent a stream event over max_line_bytes ({MAX_LINE} bytes); "
    "raise providers[].max_line_bytes if that is expected."
)

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
NDJSON_HEAD = CHUNKED + b"Content-Type: application/x-ndjson\r\n\r\n"
SSE_HEAD = CHUNKED + b"Content-Type: text/event-stream\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def token(text: str, done: bool = False) -> bytes:
    line: dict[str, Any] = {"model": MODEL, "message": {"role": "assistant", "content": text}, "done": done}
    if done:
        line |= {"done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}
    return orjson.dumps(line) + b"\n"


def sse(text: str) -> bytes:
    event = {"id": "c1", "object": "chat.completion.chunk", "model": MODEL}
    event["choices"] = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]  # type: ignore[assignment]
    return b"data: " + orjson.dumps(event) + b"\n\n"


Hostile = Callable[[Conn, "Upstream"], Awaitable[None]]


class Upstream:
    """The raw upstream. ``hostile(conn, up)`` answers the one generation request; ``cut`` is
    set once the gateway has closed that connection, ``written`` counts what got out first."""

    def __init__(self, kind: str, hostile: Hostile, hostile_path: str | None = None, models: int = 1) -> None:
        self.kind = kind
        self.models = models
        self._hostile = hostile
        self._hostile_path = hostile_path  # None: the generation request
        self.written = 0
        self.cut = threading.Event()
        self.generations: list[Request] = []
        self._shown = False  # discovery asked /api/show (in its first round, before the test)
        self._loop = asyncio.new_event_loop()
        self._server = RawServer(self._handle)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> Upstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def base_url(self) -> str:
        return self._server.url("/v1" if self.kind == "openai" else "")

    async def _handle(self, conn: Conn) -> None:
        listings = {
            "/api/tags": {"models": [{"name": f"{MODEL}{i or ''}"} for i in range(self.models)]},
            "/api/version": {"version": "0.9.0"},
            "/api/ps": {"models": []},
            "/api/show": {"capabilities": ["completion"], "model_info": {}},
            "/v1/models": {"object": "list", "data": [{"id": MODEL, "object": "model"}]},
        }
        while (request := await conn.read_request()) is not None:
            listing = listings.get(request.path)
            spare = request.path == "/api/show" and not self._shown  # discovery's own first ask
            self._shown = self._shown or request.path == "/api/show"
            if listing is not None and (request.path != self._hostile_path or spare):
                await conn.send(answer(orjson.dumps(listing), headers="Content-Type: application/json\r\n"))
                continue
            self.generations.append(request)
            await self._hostile(conn, self)
            return

    async def pump(self, conn: Conn, head: bytes, piece: bytes) -> None:
        """Write ``head``, then ``piece`` again and again until the gateway closes the
        connection (or ``MOST`` bytes went out; then wait for the close)."""
        try:
            await conn.send(head)
            while self.written < MOST:
                await conn.send(piece)
                self.written += len(piece)
            await conn.wait_closed_by_client()
        except ConnectionError:
            pass
        self.cut.set()

    def assert_cut(self) -> None:
        assert self.cut.wait(CLIENT_TIMEOUT), "the gateway never closed the upstream connection"
        assert self.written < MOST, "the upstream wrote everything: nothing limited the read"
        assert len(self.generations) == 1  # sent once, not retried on the same upstream


@pytest.fixture
def gateway(loop_kind: str) -> Iterator[Callable[..., tuple[GatewayServer, Upstream]]]:
    """``gateway(kind, hostile, hostile_path=None)``: a gateway (on ``loop_kind``) with one
    provider ``local`` of type ``kind`` in front of a hostile upstream (hostile at
    ``hostile_path``, or for the generation request)."""
    running: list[Any] = []

    def start(
        kind: str, hostile: Hostile, hostile_path: str | None = None, models: int = 1
    ) -> tuple[GatewayServer, Upstream]:
        upstream = Upstream(kind, hostile, hostile_path, models).start()
        running.append(upstream)
        config = make_config(
            f"""
providers:
  - name: local
    type: {kind}
    base_url: {upstream.base_url}
    max_response_bytes: {MAX_RESPONSE}
    max_line_bytes: {MAX_LINE}
router:
  health_interval: 3600
"""
        )
        gw = GatewayServer(config, loop=loop_kind).start()
        running.append(gw)
        return gw, upstream

    yield start
    for item in reversed(running):
        item.stop()


def post(gw: GatewayServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers=gw.headers(), timeout=CLIENT_TIMEOUT)


def streamed(gw: GatewayServer, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    with httpx.stream(
        "POST", gw.url + path, json=body, headers=gw.headers(), timeout=CLIENT_TIMEOUT
    ) as response:
        return response.status_code, response.read()


def error_message(response: httpx.Response) -> str:
    error = response.json()["error"]
    return error if isinstance(error, str) else error["message"]


def assert_failure_recorded(gw: GatewayServer, text: str) -> None:
    state = gw.gateway.fleet.states["local"]
    assert state.failures >= 1 and text in (state.last_error or ""), state.last_error


CHAT = {"model": f"local/{MODEL}", "messages": [{"role": "user", "content": "hi"}]}


# -- a whole answer over max_response_bytes ------------------------------------------------


async def endless_tokens(conn: Conn, up: Upstream) -> None:
    """An Ollama stream that never sends its final line (corral folds it for these clients)."""
    await up.pump(conn, NDJSON_HEAD, chunk(token("x" * 1000) * 16))


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/api/chat", CHAT | {"stream": False})],
    ids=["openai-surface", "ollama-surface"],
)
def test_folded_ollama_answer_over_the_limit_is_a_502(gateway, path, body) -> None:
    gw, upstream = gateway("ollama", endless_tokens)
    response = post(gw, path, body)
    assert response.status_code == 502, response.text[:300]
    assert error_message(response) == ANSWER_LIMIT
    upstream.assert_cut()
    assert_failure_recorded(gw, "max_response_bytes")


async def endless_json(conn: Conn, up: Upstream) -> None:
    await up.pump(conn, CHUNKED + b"Content-Type: application/json\r\n\r\n", chunk(b'{"a": "' + b"y" * 8192))


async def endless_close_delimited(conn: Conn, up: Upstream) -> None:
    await up.pump(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", b"z" * 8192)


@pytest.mark.parametrize(
    "hostile", [endless_json, endless_close_delimited], ids=["chunked", "close-delimited"]
)
def test_openai_answer_over_the_limit_is_a_502(gateway, hostile) -> None:
    gw, upstream = gateway("openai", hostile)
    response = post(gw, "/v1/chat/completions", CHAT)
    assert response.status_code == 502, response.text[:300]
    assert error_message(response) == ANSWER_LIMIT
    upstream.assert_cut()
    assert_failure_recorded(gw, "max_response_bytes")


def test_show_over_the_limit_is_a_502(gateway) -> None:
    gw, upstream = gateway("ollama", endless_json, hostile_path="/api/show")
    response = post(gw, "/api/show", {"model": f"local/{MODEL}"})
    assert response.status_code == 502, response.text[:300]
    assert error_message(response) == ANSWER_LIMIT
    upstream.assert_cut()


def test_model_list_over_the_limit_fails_discovery_and_names_it(gateway) -> None:
    """A model list is read to LISTING_BYTES, or max_response_bytes when that is lower (here)."""
    gw, upstream = gateway("ollama", endless_json, hostile_path="/api/tags")
    status = gw.gateway.discovery.status["local"]
    assert not status.ok
    assert status.error == ANSWER_LIMIT
    assert upstream.cut.wait(CLIENT_TIMEOUT) and upstream.written < MOST


def test_a_list_of_too_many_models_fails_discovery_and_names_the_fix(gateway) -> None:
    gw, _ = gateway("ollama", endless_json, models=MAX_MODELS + 1)
    status = gw.gateway.discovery.status["local"]
    assert not status.ok
    assert status.error == (
        f"Upstream 'local' listed {MAX_MODELS + 1} models; corral keeps at most {MAX_MODELS} per "
        "provider. List the ones to serve under providers[].models."
    )
    assert gw.gateway.catalog.models_of("local") == []


# -- one endless line ----------------------------------------------------------------------


async def endless_line(conn: Conn, up: Upstream) -> None:
    await up.pump(conn, NDJSON_HEAD + chunk(b'{"message": {"content": "'), chunk(b"w" * 8192))


async def endless_line_after_two_tokens(conn: Conn, up: Upstream) -> None:
    head = NDJSON_HEAD + chunk(token("Hel")) + chunk(token("lo"))
    await up.pump(conn, head + chunk(b'{"message": {"content": "'), chunk(b"w" * 8192))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", CHAT | {"stream": True}),
        ("/api/chat", CHAT),
        ("/v1/chat/completions", CHAT),  # folded
    ],
    ids=["openai-stream", "ollama-stream", "folded"],
)
def test_endless_line_before_the_first_token_is_a_502(gateway, path, body) -> None:
    gw, upstream = gateway("ollama", endless_line)
    status, raw = streamed(gw, path, body)
    assert status == 502, raw[:300]
    error = orjson.loads(raw)["error"]
    assert (error if isinstance(error, str) else error["message"]) == LINE_LIMIT
    upstream.assert_cut()
    assert_failure_recorded(gw, "max_line_bytes")


def test_endless_line_mid_openai_stream_ends_with_an_error_event(gateway) -> None:
    gw, upstream = gateway("ollama", endless_line_after_two_tokens)
    status, raw = streamed(gw, "/v1/chat/completions", CHAT | {"stream": True})
    assert status == 200
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert content == "Hello"
    assert events[-1]["error"]["message"] == LINE_LIMIT + " The answer is incomplete."
    assert b"[DONE]" not in raw
    upstream.assert_cut()
    assert_failure_recorded(gw, "max_line_bytes")


def test_endless_line_mid_native_stream_ends_with_an_error_line(gateway) -> None:
    gw, upstream = gateway("ollama", endless_line_after_two_tokens)
    status, raw = streamed(gw, "/api/chat", CHAT)
    assert status == 200
    lines = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    assert [line["message"]["content"] for line in lines[:-1]] == ["Hel", "lo"]
    assert lines[-1] == {"error": LINE_LIMIT + " The answer is incomplete."}
    assert not any(line.get("done") for line in lines)
    upstream.assert_cut()
    assert_failure_recorded(gw, "max_line_bytes")


async def endless_event_after_two_events(conn: Conn, up: Upstream) -> None:
    head = SSE_HEAD + chunk(sse("Hel")) + chunk(sse("lo"))
    await up.pump(conn, head + chunk(b'data: {"choices": [{"delta": {"content": "'), chunk(b"w" * 8192))


def test_endless_event_mid_openai_upstream_stream_ends_with_an_error_event(gateway) -> None:
    gw, upstream = gateway("openai", endless_event_after_two_events)
    status, raw = streamed(gw, "/v1/chat/completions", CHAT | {"stream": True})
    assert status == 200
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
    assert "".join(e["choices"][0]["delta"]["content"] for e in events[:-1]) == "Hello"
    assert events[-1]["error"]["message"] == EVENT_LIMIT + " The answer is incomplete."
    assert b"[DONE]" not in raw
    upstream.assert_cut()
    assert_failure_recorded(gw, "max_line_bytes")


def test_endless_event_bridged_to_the_ollama_surface_ends_with_an_error_line(gateway) -> None:
    gw, upstream = gateway("openai", endless_event_after_two_events)
    status, raw = streamed(gw, "/api/chat", CHAT)
    assert status == 200
    lines = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    assert "".join(line["message"]["content"] for line in lines[:-1]) == "Hello"
    assert EVENT_LIMIT in lines[-1]["error"]
    assert not any(line.get("done") for line in lines)
    upstream.assert_cut()


# -- a trailer bomb after the last chunk -----------------------------------------------------


async def trailer_bomb(conn: Conn, up: Upstream) -> None:
    """A whole, good answer, then ``0\\r\\n`` and trailer fields forever."""
    head = NDJSON_HEAD + chunk(token("Hel")) + chunk(token("lo")) + chunk(token("", done=True)) + b"0\r\n"
    await up.pump(conn, head, b"X-Bomb: " + b"b" * 100 + b"\r\n")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", CHAT),  # relayed as it comes, to the end of the body
        ("/v1/chat/completions", CHAT | {"stream": True}),
        ("/v1/chat/completions", CHAT),  # folded
    ],
    ids=["ollama-stream", "openai-stream", "folded"],
)
def test_trailer_bomb_costs_the_upstream_connection_not_the_answer(gateway, path, body) -> None:
    """The answer was complete before the bomb: the client gets all of it, promptly and without
    an error after its last line; the upstream connection is closed after at most 64 KiB of
    trailer (plus what the sockets held), not read until the upstream's timeout."""
    gw, upstream = gateway("ollama", trailer_bomb)
    status, raw = streamed(gw, path, body)
    assert status == 200, raw[:300]
    if path == "/api/chat":
        lines = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
        assert [line["message"]["content"] for line in lines] == ["Hel", "lo", ""]
        assert lines[-1]["done"] is True
    elif body.get("stream"):
        assert raw.rstrip().endswith(b"data: [DONE]")
        assert b'"error"' not in raw
    else:
        assert orjson.loads(raw)["choices"][0]["message"]["content"] == "Hello"
    upstream.assert_cut()
