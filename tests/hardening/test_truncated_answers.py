"""Truncated answers are never reported complete (issue #13, high): behind a real gateway, over
real sockets, on asyncio and uvloop, a raw OpenAI-compatible upstream does what llama-cpp-python
does when it interrupts a generation: it sends the role chunk, then ``data: [DONE]``, then drops
the connection without ending its chunked body. Variants: the same without the drop (a clean end
but no finish reason), and a whole answer whose connection breaks after its ``[DONE]``.

On the OpenAI surface the client must get the in-band error event and no ``data: [DONE]``
before (or after) it; on the Ollama surface the last line must be ``{"error": ...}``, never a
``done: true`` one. The deployment's failure and the usage record's error must say so too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from corral.usage.record import UsageRecord
from tests.httpclient.rawserver import Conn, RawServer, answer
from tests.support.gateway import GatewayServer, make_config

pytestmark = pytest.mark.timeout(60)

MODEL = "m"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
LAST = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    obj = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": MODEL, **extra}
    obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + orjson.dumps(obj) + b"\n\n"


ROLE = event({"role": "assistant", "content": ""})
DONE = b"data: [DONE]\n\n"
USAGE = b'data: {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}\n\n'
# what the upstream writes after the head, then whether it ends the body or drops the connection
CASES = {
    "role-done-drop": ([ROLE, DONE], "drop"),  # llama-cpp-python interrupting a generation
    "role-done-end": ([ROLE, DONE], "end"),  # no finish reason, though the body ended well
    "whole-done-drop": ([ROLE, event({"content": "Hi"}), event({}, "stop"), USAGE, DONE], "drop"),
}


class Upstream:
    """The raw upstream on its own thread: listings as an OpenAI-compatible server, then the
    scripted answer for the generation request."""

    def __init__(self, pieces: list[bytes], end: str) -> None:
        self.pieces, self.end = pieces, end
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

    async def _handle(self, conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.path == "/v1/models":
                listing = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
                await conn.send(answer(orjson.dumps(listing), headers="Content-Type: application/json\r\n"))
                continue
            await conn.send(SSE_HEAD + b"".join(chunk(p) for p in self.pieces))
            if self.end == "end":
                await conn.send(LAST)
                continue
            conn.writer.close()  # the body never ends: the connection just goes
            return


class Records:
    """The accountant's sink: the usage records, and an event per record."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.arrived = threading.Event()

    def submit(self, record: UsageRecord) -> None:
        self.records.append(record)
        self.arrived.set()


@pytest.fixture
def gateway(loop_kind: str) -> Iterator[Callable[[str], tuple[GatewayServer, Records]]]:
    running: list[Any] = []

    def start(case: str) -> tuple[GatewayServer, Records]:
        upstream = Upstream(*CASES[case]).start()
        running.append(upstream)
        config = make_config(
            f"""
providers:
  - name: engine
    type: openai
    base_url: {upstream._server.url("/v1")}
router:
  health_interval: 3600
"""
        )
        gw = GatewayServer(config, loop=loop_kind).start()
        running.append(gw)
        records = Records()

        async def capture() -> None:
            gw.app.parts.accountant.writer = records

        gw.call(capture)
        return gw, records

    yield start
    for item in reversed(running):
        item.stop()


def stream(gw: GatewayServer, path: str, body: dict[str, Any]) -> bytes:
    with httpx.stream("POST", gw.url + path, json=body, headers=gw.headers(), timeout=20) as response:
        assert response.status_code == 200
        return response.read()


def assert_recorded(gw: GatewayServer, records: Records) -> None:
    assert records.arrived.wait(10), "no usage record"
    (record,) = records.records
    # a stream ended in-band, or a call that failed before its first token (no answer)
    assert record.error_class in ("stream_interrupted", "upstream_stream_interrupted"), record.error_class
    state = gw.gateway.fleet.states["engine"]
    assert state.failures >= 1 and state.last_error, "the deployment's failure was not recorded"


CHAT = {"model": f"engine/{MODEL}", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.mark.parametrize("case", list(CASES))
def test_openai_client_gets_the_error_and_never_done(
    gateway: Callable[[str], tuple[GatewayServer, Records]], case: str
) -> None:
    gw, records = gateway(case)
    body = stream(gw, "/v1/chat/completions", CHAT)
    events = [e for e in body.split(b"\n\n") if e.strip()]
    assert b"[DONE]" not in body, f"an interrupted answer was reported complete: {body!r}"
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "upstream_stream_interrupted", last
    assert "incomplete" in last["error"]["message"]
    assert_recorded(gw, records)


@pytest.mark.parametrize("case", list(CASES))
def test_ollama_client_gets_an_error_line_never_done(
    gateway: Callable[[str], tuple[GatewayServer, Records]], case: str
) -> None:
    """Through the conversation model nothing reaches the client before the first content: an
    upstream that fails before any is an error answer (the engine could still fail over), one
    that fails after some ends the stream with an error line."""
    gw, records = gateway(case)
    with httpx.stream("POST", gw.url + "/api/chat", json=CHAT, headers=gw.headers(), timeout=20) as response:
        body = response.read()
    if case.startswith("role-done"):
        assert response.status_code == 502
        assert set(orjson.loads(body)) == {"error"}
    else:
        assert response.status_code == 200
        lines = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        assert not any(line.get("done") is True for line in lines), f"reported complete: {body!r}"
        assert set(lines[-1]) == {"error"}, lines[-1]
        assert [line["message"]["content"] for line in lines[:-1]] == ["Hi"]
    assert_recorded(gw, records)
