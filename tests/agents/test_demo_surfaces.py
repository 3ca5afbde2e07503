"""``demo/echo`` answers the agents' surfaces too (``corral serve --demo``, no upstream at all):
``/v1/messages`` and ``/v1/responses``, whole and streamed, with the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.support.gateway import GatewayServer, make_config


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    with GatewayServer(make_config({}, demo=True)) as gw:
        yield gw


def test_messages_whole_and_streamed(gateway: GatewayServer) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0, timeout=20)
    ask = [{"role": "user", "content": "hello there"}]
    reply = client.messages.create(model="demo/echo", max_tokens=32, messages=ask)  # type: ignore[arg-type]
    assert reply.model == "demo/echo" and reply.stop_reason == "end_turn"
    assert reply.content[0].text == "Echo: hello there"  # type: ignore[union-attr]
    assert reply.usage.input_tokens == 2 and reply.usage.output_tokens == 3
    with client.messages.stream(model="demo/echo", max_tokens=32, messages=ask) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: hello there" and final.stop_reason == "end_turn" and final.usage.output_tokens == 3
    cut = client.messages.create(model="demo/echo", max_tokens=2, messages=ask)  # type: ignore[arg-type]
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "Echo: hello"  # type: ignore[union-attr]


def test_responses_whole_and_streamed(gateway: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=20)
    reply = client.responses.create(model="demo/echo", input="hello there")
    assert reply.model == "demo/echo" and reply.status == "completed"
    assert reply.output_text == "Echo: hello there" and reply.usage is not None
    assert reply.usage.output_tokens == 3
    with client.responses.stream(model="demo/echo", input="hello there") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Echo: hello there" and final.status == "completed" and final.output_text == text
