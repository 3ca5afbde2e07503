"""Smoke test of the real engine set-up: SmolLM2 on llama-cpp-python answers the openai client."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.engine import Engine, engine_fixture

pytestmark = pytest.mark.engine

llm_engine = engine_fixture(scope="module")


@pytest.fixture
def client(llm_engine: Engine) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm_engine.base_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_engine_lists_its_model_alias(llm_engine: Engine, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [llm_engine.model]


def test_engine_answers_a_chat_completion(llm_engine: Engine, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=llm_engine.model,
        messages=[{"role": "user", "content": "Say hello in one short sentence."}],
        max_tokens=16,
        temperature=0,
        seed=7,
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 16
    assert reply.usage.prompt_tokens > 0


def test_engine_streams_a_chat_completion(llm_engine: Engine, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=llm_engine.model,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces).strip()
