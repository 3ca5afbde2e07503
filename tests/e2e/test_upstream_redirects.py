"""An upstream that redirects is a configuration error corral names; it never follows it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


def redirecting(seen: list[str]) -> web.Application:
    async def moved(request: web.Request) -> web.Response:
        seen.append(request.path)
        raise web.HTTPMovedPermanently("https://user:pw@new.example:8443/v1/chat/completions?token=t")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", moved)
    return app


@pytest.fixture
def seen() -> list[str]:
    return []


@pytest.fixture
def gateway(seen: list[str]) -> Iterator[GatewayServer]:
    with ServerThread(lambda: redirecting(seen)) as upstream:
        config = make_config(
            {
                "providers": [
                    {"name": "moved", "type": "openai", "base_url": upstream.url + "/v1", "models": ["m"]}
                ]
            }
        )
        with GatewayServer(config) as gw:
            yield gw


@pytest.mark.parametrize("stream", [False, True])
def test_a_redirect_is_a_502_naming_the_new_address_without_its_secrets(
    gateway: GatewayServer, seen: list[str], stream: bool
) -> None:
    answer = httpx.post(
        gateway.v1 + "/chat/completions",
        json={"model": "moved/m", "messages": [{"role": "user", "content": "x"}], "stream": stream},
        headers=gateway.headers(),
        timeout=10,
    )
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]
    assert "redirected to https://new.example:8443/v1/chat/completions" in message
    assert "base_url" in message
    assert "pw" not in message and "token" not in message
    assert seen and all(path == "/v1/chat/completions" for path in seen if path != "/v1/models")
