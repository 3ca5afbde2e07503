"""An answer the real engine interrupts is never reported complete (issue #13, high).

llama-cpp-python's server, by default, interrupts the generation in progress when another
request arrives: the stream gets ``data: [DONE]`` without a finish reason and ends. Here a
streamed answer through corral is interrupted on purpose, by a request sent straight to the
engine once the client has its first token. The client must get an error (the OpenAI SDK raises
on the in-band error event; an Ollama client's last line is ``{"error": ...}``) and never
``[DONE]`` or ``done: true``; the deployment must record the failure.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from corral.usage.record import UsageRecord
from tests.support.engine import Engine, engine_fixture
from tests.support.gateway import GatewayServer, make_config

pytestmark = pytest.mark.engine

llm_engine = engine_fixture(scope="module")
ASK = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
SETTINGS = {"max_tokens": 200, "temperature": 0, "seed": 3}  # long enough to still run at the interrupt


class Records:
    """The accountant's sink: a call's usage record is written once its stream has ended and the
    engine has recorded how (the relay's clean-up runs the engine's step first)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.arrived = threading.Semaphore(0)

    def submit(self, record: UsageRecord) -> None:
        self.records.append(record)
        self.arrived.release()

    def next(self) -> UsageRecord:
        assert self.arrived.acquire(timeout=30), "no usage record"
        return self.records[-1]


@pytest.fixture(scope="module")
def records() -> Records:
    return Records()


@pytest.fixture(scope="module")
def gateway(llm_engine: Engine, records: Records) -> Iterator[GatewayServer]:
    config = make_config(
        {
            "providers": [
                {"name": "engine", "type": "openai", "base_url": llm_engine.base_url, "timeout": 300}
            ],
            "router": {"health_interval": "1h", "failover_timeout": "300s"},
            "server": {"discovery_interval": "1h"},
        }
    )
    with GatewayServer(config) as gw:

        async def capture() -> None:
            gw.app.parts.accountant.writer = records

        gw.call(capture)
        yield gw


def interrupt(engine: Engine) -> None:
    """Another request to the engine: it cuts the generation in progress."""
    with urllib.request.urlopen(f"{engine.base_url}/models", timeout=60) as answer:
        answer.read()


def test_the_openai_client_gets_an_error_not_done(
    llm_engine: Engine, gateway: GatewayServer, records: Records
) -> None:
    failures = gateway.gateway.fleet.states["engine"].failures
    body = {"model": f"engine/{llm_engine.model}", "messages": ASK, "stream": True, **SETTINGS}
    events: list[bytes] = []
    with httpx.stream(
        "POST", gateway.v1 + "/chat/completions", json=body, headers=gateway.headers(), timeout=300
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[6:].encode())
            if len(events) == 2:  # the role chunk, then the first token: now cut it off
                interrupt(llm_engine)
    assert b"[DONE]" not in events, f"an interrupted answer was reported complete: {events[-3:]}"
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "upstream_stream_interrupted", last
    finishes = [c["finish_reason"] for e in events[:-1] for c in orjson.loads(e).get("choices", [])]
    assert not any(finishes), "the stream was not interrupted: make the answer longer"
    assert records.next().error_class == "stream_interrupted"
    assert gateway.gateway.fleet.states["engine"].failures > failures
    # and the SDK raises on it
    via = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=300)
    stream = via.chat.completions.create(
        model=f"engine/{llm_engine.model}",
        messages=ASK,  # type: ignore[arg-type]
        stream=True,
        **SETTINGS,  # type: ignore[arg-type]
    )
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if any(c.delta.content for c in chunk.choices):
                interrupt(llm_engine)
    records.next()


def test_the_ollama_client_ends_with_an_error_line(
    llm_engine: Engine, gateway: GatewayServer, records: Records
) -> None:
    failures = gateway.gateway.fleet.states["engine"].failures
    body = {
        "model": f"engine/{llm_engine.model}",
        "messages": ASK,
        "options": {"num_predict": 200, "temperature": 0},
    }
    lines = []
    with httpx.stream(
        "POST", gateway.url + "/api/chat", json=body, headers=gateway.headers(), timeout=300
    ) as r:
        assert r.status_code == 200
        for raw in r.iter_lines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            if not lines and line.get("message", {}).get("content"):
                interrupt(llm_engine)
            lines.append(line)
    assert len(lines) > 1 and not any(line.get("done") is True for line in lines), lines[-3:]
    assert set(lines[-1]) == {"error"}, lines[-1]
    assert records.next().error_class == "stream_interrupted"
    assert gateway.gateway.fleet.states["engine"].failures > failures
