"""corral's own health checks and discovery never cut a generation on the real engine.

llama-cpp-python's server runs with its default ``interrupt_requests``: any request that
arrives while it generates (``GET /v1/models`` included) ends the stream in progress after the
next token, with ``[DONE]`` and no finish reason. corral probes and rediscovers OpenAI-type
upstreams with ``GET /v1/models``; with both intervals at 50 ms, a streamed answer to a long
prompt (prompt processing takes a while, then dozens of tokens) would be cut every time
unless corral leaves a deployment alone while its requests progress.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.engine import Engine, engine_fixture
from tests.support.gateway import GatewayServer, make_config

pytestmark = pytest.mark.engine

llm_engine = engine_fixture(scope="module")
# About 1,100 prompt tokens: processing the prompt alone spans many probe intervals (20 s on two
# busy cores, more under load: hence the long first-token timeout). The engine's prompt cache
# makes the later runs start sooner; their tokens still stream over many probe intervals.
TEXT = " ".join(f"Item {i} is a {('red', 'green', 'blue', 'small', 'large')[i % 5]} box." for i in range(120))
PROMPT = [{"role": "user", "content": f"{TEXT}\nList the colours that appear above."}]
SETTINGS = {"max_tokens": 48, "temperature": 0, "seed": 3}


@pytest.fixture(scope="module")
def gateway(llm_engine: Engine) -> Iterator[GatewayServer]:
    config = make_config(
        {
            "providers": [
                {"name": "engine", "type": "openai", "base_url": llm_engine.base_url, "timeout": 300}
            ],
            "router": {"health_interval": "50ms", "health_timeout": "3s", "failover_timeout": "300s"},
            "server": {"discovery_interval": "50ms"},
        }
    )
    with GatewayServer(config) as gw:
        yield gw


def test_a_long_stream_is_not_cut_by_probes_or_discovery(llm_engine: Engine, gateway: GatewayServer) -> None:
    via = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=300)
    for run in range(3):
        stream = via.chat.completions.create(
            model=f"engine/{llm_engine.model}",
            messages=PROMPT,  # type: ignore[arg-type]
            stream=True,
            **SETTINGS,  # type: ignore[arg-type]
        )
        finish: str | None = None
        pieces = 0
        for chunk in stream:
            for choice in chunk.choices:
                pieces += bool(choice.delta.content)
                finish = choice.finish_reason or finish
        assert finish in ("stop", "length"), f"run {run}: the stream was cut after {pieces} pieces"
        assert pieces > 1
    health = gateway.gateway.fleet.states["engine"]
    assert health.ejections == 0 and health.consecutive_failures == 0
