"""Every client API's calls are recorded with their surface, against a real gateway: the usage
records, the admin API's filter and grouping, and the metrics' label use the same six names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from corral.usage.record import SURFACES
from tests.support.gateway import GatewayServer, make_config

MODEL = "demo/echo"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home: Path = tmp_path_factory.mktemp("surface")
    with GatewayServer(make_config({}, demo=True), home=home) as gw:
        yield gw


def by_surface(gw: GatewayServer) -> dict[str | None, int]:
    answer = httpx.get(gw.admin_url + "/admin/usage", params={"group_by": "surface"}, headers=gw.headers())
    assert answer.status_code == 200, answer.text
    return {row["surface"]: row["requests"] for row in answer.json()["data"]}


def test_each_api_is_recorded_and_labelled_with_its_surface(gateway: GatewayServer) -> None:
    oai = openai.OpenAI(base_url=gateway.v1, api_key=gateway.key, max_retries=0, timeout=30)
    oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    oai.completions.create(model=MODEL, prompt="hi")
    oai.embeddings.create(model=MODEL, input="hi")
    oai.responses.create(model=MODEL, input="hi")
    ant = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0, timeout=30)
    ant.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    for path, body in (
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False}),
    ):
        assert (
            httpx.post(gateway.url + path, json=body, headers=gateway.headers(), timeout=30).status_code
            == 200
        )
    expected = {name: 1 for name in SURFACES} | {"ollama": 2}
    deadline = time.monotonic() + 15
    while (seen := by_surface(gateway)) != expected:  # the writer commits in the background
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    one = httpx.get(
        gateway.admin_url + "/admin/usage/recent",
        params={"surface": "anthropic_messages"},
        headers=gateway.headers(),
    ).json()["data"]
    assert [r["surface"] for r in one] == ["anthropic_messages"]
    metrics = httpx.get(gateway.admin_url + "/metrics", headers=gateway.headers()).text
    for name in SURFACES:
        assert f'surface="{name}"' in metrics, name
