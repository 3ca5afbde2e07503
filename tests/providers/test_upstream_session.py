"""The pooled upstream session: shared by every client, so it must not carry state between them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


def cookie_upstream(seen: list[str | None]) -> web.Application:
    """An OpenAI-type upstream that sets a session cookie on every answer and notes what it got."""

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        body = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
        }  # fmt: skip
        response = web.json_response(body)
        response.set_cookie("upstream_session", f"client-{len(seen)}")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.fixture
def seen() -> list[str | None]:
    return []


@pytest.fixture
def upstream(seen: list[str | None]) -> Iterator[ServerThread]:
    with ServerThread(lambda: cookie_upstream(seen)) as server:
        yield server


def test_an_upstream_cookie_never_reaches_another_request(
    upstream: ServerThread, seen: list[str | None]
) -> None:
    # By name, not by IP: aiohttp's default cookie jar ignores cookies from IP addresses.
    base_url = f"http://localhost:{upstream.port}/v1"
    config = make_config(
        {"providers": [{"name": "up", "type": "openai", "base_url": base_url, "models": ["m"]}]}
    )
    with GatewayServer(config) as gw:
        for _ in range(3):
            answer = httpx.post(
                gw.v1 + "/chat/completions",
                json={"model": "up/m", "messages": [{"role": "user", "content": "x"}]},
                headers=gw.headers(),
            )
            assert answer.status_code == 200
    assert seen == [None, None, None]
