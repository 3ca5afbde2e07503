"""The real LLM engine (llama-cpp-python with SmolLM2-135M) answering through corral's
``/v1/messages`` and ``/v1/responses``, streamed and not: the same text as a direct chat
completion with the same settings, since both surfaces are translated to it."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.support.engine import Engine, engine_fixture
from tests.support.gateway import GatewayServer, make_config

pytestmark = pytest.mark.engine

llm_engine = engine_fixture(scope="module")
QUESTION = "Name one colour of the sky."
LIMIT = 12


@pytest.fixture(scope="module")
def gateway(llm_engine: Engine) -> Iterator[GatewayServer]:
    config = make_config(
        {
            "providers": [
                {"name": "engine", "type": "openai", "base_url": llm_engine.base_url, "timeout": 120}
            ],
            "models": [{"name": "smol", "target": f"engine/{llm_engine.model}"}],
        }
    )
    with GatewayServer(config) as gw:
        yield gw


@pytest.fixture(scope="module")
def expected(llm_engine: Engine) -> str:
    direct = openai.OpenAI(base_url=llm_engine.base_url, api_key="unused", max_retries=0, timeout=120)
    answer = direct.chat.completions.create(
        model=llm_engine.model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=LIMIT,
        temperature=0,
    )
    text = answer.choices[0].message.content
    assert text
    return text


def test_messages_whole_and_streamed(gateway: GatewayServer, expected: str) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0, timeout=120)
    args = {
        "model": "smol",
        "max_tokens": LIMIT,
        "messages": [{"role": "user", "content": QUESTION}],
        "extra_body": {"temperature": 0},
    }
    reply = client.messages.create(**args)  # type: ignore[call-overload]
    assert reply.content[0].text == expected and reply.stop_reason in ("end_turn", "max_tokens")
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    with client.messages.stream(**args) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len([p for p in pieces if p]) > 1 and "".join(pieces) == expected
    assert final.usage.output_tokens > 0  # counted from the stream: the engine ignores include_usage


def test_responses_whole_and_streamed(gateway: GatewayServer, expected: str) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=120)
    reply = client.responses.create(model="smol", input=QUESTION, max_output_tokens=16, temperature=0)
    events = list(
        client.responses.create(
            model="smol", input=QUESTION, max_output_tokens=16, temperature=0, stream=True
        )
    )
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == reply.output_text
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert reply.usage is not None and reply.usage.output_tokens > 0
