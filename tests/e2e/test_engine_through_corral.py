"""Through corral to a real LLM engine: llama-cpp-python's server running SmolLM2-135M-Instruct."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.engine import Engine, engine_fixture
from tests.support.gateway import GatewayServer, make_config

pytestmark = pytest.mark.engine

llm_engine = engine_fixture(scope="module")
PROMPT = [{"role": "user", "content": "Name one colour of the sky."}]
SETTINGS = {"max_tokens": 12, "temperature": 0, "seed": 11}


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


def test_answers_match_a_direct_call(llm_engine: Engine, gateway: GatewayServer) -> None:
    direct = openai.OpenAI(base_url=llm_engine.base_url, api_key="unused", max_retries=0, timeout=120)
    via = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=120)
    expected = direct.chat.completions.create(model=llm_engine.model, messages=PROMPT, **SETTINGS)  # type: ignore[arg-type]
    for model in ("smol", f"engine/{llm_engine.model}", llm_engine.model):
        got = via.chat.completions.create(model=model, messages=PROMPT, **SETTINGS)  # type: ignore[arg-type]
        assert got.choices[0].message.content == expected.choices[0].message.content
        assert got.usage is not None and got.usage.completion_tokens == expected.usage.completion_tokens  # type: ignore[union-attr]


def test_stream_through_corral(llm_engine: Engine, gateway: GatewayServer) -> None:
    via = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=120)
    whole = via.chat.completions.create(model="smol", messages=PROMPT, **SETTINGS)  # type: ignore[arg-type]
    stream = via.chat.completions.create(model="smol", messages=PROMPT, stream=True, **SETTINGS)  # type: ignore[arg-type]
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == whole.choices[0].message.content


def test_unknown_model_on_the_engine_is_an_honest_error(gateway: GatewayServer) -> None:
    via = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=60)
    with pytest.raises(openai.NotFoundError):
        via.chat.completions.create(model="smoll", messages=PROMPT, max_tokens=4)  # type: ignore[arg-type]
