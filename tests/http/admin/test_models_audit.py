"""GET /admin/models (aliases and discovered models) and GET /admin/audit (filters, bounds)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from corral.http.admin.models import context_length
from tests.emulators.ollama import OllamaEmulator
from tests.http.admin.conftest import yaml_config
from tests.http.admin.test_providers import error
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home: Path = tmp_path_factory.mktemp("home")
    with (
        ServerThread(OllamaEmulator().app) as upstream,
        GatewayServer(make_config(yaml_config(upstream.url), demo=True), home=home) as server,
    ):
        yield server


def test_models_lists_aliases_and_discovered_models(gw: GatewayServer) -> None:
    c = httpx.Client(base_url=gw.admin_url, headers=gw.headers())
    alias = {"name": "api-fast", "target": "ollama/qwen3:0.6b", "num_ctx": 8192}
    assert c.post("/admin/aliases", json=alias).status_code == 201
    rows = {m["id"]: m for m in c.get("/admin/models").json()["data"]}
    llama = rows["yaml-gpu/llama3.2:latest"]
    assert llama["type"] == "discovered" and llama["provider"] == "yaml-gpu"
    assert llama["capabilities"] == ["completion", "tools"] and llama["aliases"] == ["chat"]
    assert llama["context_length"] == 131072  # not in /api/tags: asked once of /api/show
    assert rows["yaml-gpu/qwen3:0.6b"]["aliases"] == ["api-fast"]
    assert "thinking" in rows["yaml-gpu/qwen3:0.6b"]["capabilities"]
    assert rows["yaml-gpu/nomic-embed-text:latest"]["capabilities"] == ["embedding"]
    chat = rows["chat"]
    assert (chat["type"], chat["provider"], chat["model"], chat["managed_by"]) == (
        "alias",
        "yaml-gpu",
        "llama3.2",
        "config",
    )
    assert chat["capabilities"] == ["completion", "tools"]
    fast = rows["api-fast"]
    assert fast["managed_by"] == "api" and fast["context_length"] == 8192  # the pinned num_ctx
    assert rows["demo/echo"]["type"] == "discovered" and rows["demo/echo"]["context_length"] is None
    assert set(chat) >= {"id", "provider", "model", "type", "context_length", "capabilities", "aliases"}


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"context_length": 40960}, 40960),
        ({"details": {"family": "llama", "context_length": 8192}}, 8192),
        ({"model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960}}, 40960),
        ({"details": {"family": "llama"}}, None),
        ({"context_length": True}, None),
        ({"context_length": "4096"}, None),
    ],
)
def test_context_length_comes_from_what_ollama_reports(
    details: dict[str, object], expected: int | None
) -> None:
    assert context_length(details) == expected


def test_audit_filters_and_bounds(gw: GatewayServer) -> None:
    c = httpx.Client(base_url=gw.admin_url, headers=gw.headers())
    start = datetime.now(UTC)
    time.sleep(0.01)
    for name in ("a1", "a2", "a3"):
        assert c.post("/admin/aliases", json={"name": name, "target": "demo/echo"}).status_code == 201
    assert c.delete("/admin/aliases/a2").status_code == 200
    recent = c.get("/admin/audit", params={"since": start.isoformat()}).json()["data"]
    assert [(e["action"], e["target"]) for e in recent] == [
        ("alias.delete", "a2"),
        ("alias.create", "a3"),
        ("alias.create", "a2"),
        ("alias.create", "a1"),
    ]
    assert all(e["actor"] == "master" and e["at"] >= start.isoformat() for e in recent)
    assert c.get("/admin/audit", params={"since": int(start.timestamp()) + 3600}).json()["data"] == []
    deletes = c.get("/admin/audit", params={"action": "alias.delete"}).json()["data"]
    assert [e["target"] for e in deletes] == ["a2"]
    page = c.get("/admin/audit", params={"limit": 2, "offset": 1, "since": start.isoformat()}).json()["data"]
    assert [e["target"] for e in page] == ["a3", "a2"]
    cases: list[tuple[dict[str, str | int], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-01-01T00:00:00"}, "since"),
        ({"target": "x" * 300}, "target"),
        ({"colour": "red"}, "colour"),
    ]
    for params, param in cases:
        assert error(c.get("/admin/audit", params=params), 400)["param"] == param, params
