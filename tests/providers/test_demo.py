"""The demo provider answers bad content parts with a 400 naming them, not a 500."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.core.call import Attempt, Call, Endpoint
from corral.errors import InvalidRequest
from corral.providers.demo import DemoProvider


async def answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"model": "demo/echo", "messages": messages}
    call = Call(Endpoint.CHAT, body, orjson.dumps(body), "demo/echo", False, "req_1")
    reply = await DemoProvider().send(call, Attempt(model="echo"))
    assert reply.body is not None
    data: dict[str, Any] = orjson.loads(reply.body)
    return data


@pytest.mark.parametrize(
    ("content", "param"),
    [
        ([{"type": "text", "text": 5}], "messages[1].content[0].text"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": None}], "messages[1].content[1].text"),
        ([5], "messages[1].content[0]"),
        (["hi"], "messages[1].content[0]"),
    ],
)
async def test_a_content_part_of_the_wrong_type_is_a_400(content: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await answer([{"role": "system", "content": "x"}, {"role": "user", "content": content}])
    assert info.value.status == 400 and info.value.param == param
    assert param in info.value.message


async def test_text_parts_are_echoed_and_image_parts_skipped() -> None:
    content = [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    data = await answer([{"role": "user", "content": content}])
    assert data["choices"][0]["message"]["content"] == "Echo: hello "
