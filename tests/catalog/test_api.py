"""/admin/catalog through a live gateway: CRUD, the bulk import from the Ollama emulator's
discovery and /api/show (dry run first), costs in usage from catalog prices, and the catalog's
metadata in /api/tags and /v1/models."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from corral.store.tables import usage
from tests.emulators.ollama import ModelSpec, OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

CLOUD_KEY = "ollama-cloud-key-abcdef0123"
ENTRY = {"provider": "ollama-cloud", "model": "gpt-oss:120b"}


@dataclass
class Setup:
    gw: GatewayServer
    cloud: OllamaEmulator

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method, self.gw.admin_url + path, json=body, headers=self.gw.headers(), timeout=30
        )

    def chat(self, model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "one two three"}]}
        return httpx.post(self.gw.v1 + "/chat/completions", json=body, headers=self.gw.headers(), timeout=20)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    cloud = OllamaEmulator(
        [
            ModelSpec(
                "gpt-oss:120b", family="gptoss", context_length=131072, capabilities=["completion", "tools"]
            ),
            ModelSpec(
                "kimi-k2.5", family="kimi", context_length=262144, capabilities=["completion", "thinking"]
            ),
        ],
        api_key=CLOUD_KEY,
    )
    with ServerThread(cloud.app) as up:
        config = make_config(
            {
                "providers": [
                    {"name": "ollama-cloud", "type": "ollama", "base_url": up.url, "api_key": CLOUD_KEY}
                ],
                "prices": {"kimi-k2.5": {"input": 5.0, "output": 5.0}},
            }
        )
        with GatewayServer(config, home=tmp_path) as gw:
            yield Setup(gw, cloud)


def usage_rows(gw: GatewayServer, n: int) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with gw.app.parts.control.store.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(usage).order_by(usage.c.id))]

    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = gw.call(fetch)
    while len(rows) < n and time.monotonic() < deadline:  # the writer batches in the background
        time.sleep(0.05)
        rows = gw.call(fetch)
    return rows


def test_crud(setup: Setup) -> None:
    created = setup.admin(
        "POST", "/admin/catalog", ENTRY | {"display_name": "GPT-OSS 120B", "input_price": 0.15}
    )
    assert created.status_code == 201, created.text
    assert created.json()["enabled"] is True and created.json()["output_price"] is None
    assert (
        setup.admin(
            "POST", "/admin/catalog", {"provider": "ollama-cloud", "model": "gpt-oss:120b"}
        ).status_code
        == 409
    )
    path = "/admin/catalog/ollama-cloud/gpt-oss:120b"
    patched = setup.admin("PATCH", path, {"output_price": 0.6, "notes": "cloud"})
    assert patched.status_code == 200 and patched.json()["input_price"] == 0.15
    assert setup.admin("GET", path).json()["notes"] == "cloud"
    listed = setup.admin("GET", "/admin/catalog?provider=ollama-cloud").json()["data"]
    assert [row["model"] for row in listed] == ["gpt-oss:120b"]
    bad = setup.admin("PATCH", path, {"input_price": -3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input_price"
    assert setup.admin("DELETE", path).json() == {"name": "ollama-cloud/gpt-oss:120b", "deleted": True}
    assert setup.admin("GET", path).status_code == 404


def test_import_fills_capabilities_and_context_from_api_show_after_a_dry_run(setup: Setup) -> None:
    kimi = {"provider": "ollama-cloud", "model": "kimi-k2.5", "input_price": 1.0, "context_length": 1000}
    setup.admin("POST", "/admin/catalog", kimi)
    shows_before = len(setup.cloud.requests_to("/api/show"))
    dry = setup.admin("POST", "/admin/catalog/import", {"provider": "ollama-cloud", "dry_run": True})
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["dry_run"] is True and plan["found"] == 2
    assert plan["added"] == [
        {"model": "gpt-oss:120b", "capabilities": ["completion", "tools"], "context_length": 131072}
    ]
    assert plan["updated"] == [
        {
            "model": "kimi-k2.5",  # the stored id: kimi-k2.5:latest is the same Ollama model
            "changes": {
                "capabilities": {"from": None, "to": ["completion", "thinking"]},
                "context_length": {"from": 1000, "to": 262144},
            },
        }
    ]
    assert plan["not_listed"] == [] and plan["unchanged"] == []
    assert len(setup.cloud.requests_to("/api/show")) - shows_before == 2  # asked each model
    assert setup.cloud.requests_to("/api/show")[-1].headers["authorization"] == f"Bearer {CLOUD_KEY}"
    assert [r["model"] for r in setup.admin("GET", "/admin/catalog").json()["data"]] == [
        "kimi-k2.5"
    ]  # nothing written

    done = setup.admin("POST", "/admin/catalog/import", {"provider": "ollama-cloud"}).json()
    assert done["dry_run"] is False
    rows = {r["model"]: r for r in setup.admin("GET", "/admin/catalog").json()["data"]}
    assert rows["gpt-oss:120b"]["context_length"] == 131072 and rows["gpt-oss:120b"]["input_price"] is None
    assert (rows["kimi-k2.5"]["context_length"], rows["kimi-k2.5"]["input_price"]) == (262144, 1.0)
    again = setup.admin("POST", "/admin/catalog/import", {"provider": "ollama-cloud", "dry_run": True}).json()
    assert again["added"] == [] and again["updated"] == [] and len(again["unchanged"]) == 2
    missing = setup.admin("POST", "/admin/catalog/import", {"provider": "nope"})
    assert missing.status_code == 404


def test_costs_come_from_the_catalog_then_prices(setup: Setup) -> None:
    setup.admin("POST", "/admin/catalog", ENTRY | {"input_price": 1_000_000.0, "output_price": 0.0})
    assert setup.chat("gpt-oss:120b").status_code == 200
    assert setup.chat("kimi-k2.5").status_code == 200  # no catalog entry: prices: {input 5, output 5}
    first, second = usage_rows(setup.gw, 2)
    assert first["served_model"] == "gpt-oss:120b" and first["prompt_tokens"] > 0
    assert first["cost_usd"] == pytest.approx(first["prompt_tokens"] * 1.0)  # USD 1 per input token
    expected = (second["prompt_tokens"] + second["completion_tokens"]) * 5 / 1_000_000
    assert second["cost_usd"] == pytest.approx(expected)


def test_listings_carry_catalog_metadata_where_they_have_a_place(setup: Setup) -> None:
    setup.admin(
        "POST",
        "/admin/catalog",
        {"provider": "ollama-cloud", "model": "gpt-oss:120b", "context_length": 65536},
    )
    tags = httpx.get(setup.gw.url + "/api/tags", headers=setup.gw.headers()).json()["models"]
    row = next(m for m in tags if m["name"] == "gpt-oss:120b")
    assert row["details"]["context_length"] == 65536  # Ollama's list has no context length of its own
    assert row["capabilities"] == ["completion", "tools"]  # the upstream's own, kept
    setup.admin("PATCH", "/admin/catalog/ollama-cloud/kimi-k2.5:latest", {"enabled": False})  # no entry yet
    setup.admin(
        "POST", "/admin/catalog", {"provider": "ollama-cloud", "model": "kimi-k2.5", "enabled": False}
    )
    tags = httpx.get(setup.gw.url + "/api/tags", headers=setup.gw.headers()).json()["models"]
    assert [m["name"] for m in tags] == ["gpt-oss:120b"]
    ids = [m["id"] for m in httpx.get(setup.gw.v1 + "/models", headers=setup.gw.headers()).json()["data"]]
    assert "ollama-cloud/gpt-oss:120b" in ids and not any("kimi" in i for i in ids)
    model = httpx.get(setup.gw.v1 + "/models", headers=setup.gw.headers()).json()["data"][0]
    assert set(model) == {"id", "object", "created", "owned_by"}  # nothing invented
    assert setup.chat("kimi-k2.5").status_code == 200  # hidden from listings, still served


def test_a_restarted_gateway_prices_from_the_stored_catalog_at_once(tmp_path: Path) -> None:
    """The catalog is loaded into memory when the gateway starts, not only when it changes."""
    cloud = OllamaEmulator([ModelSpec("gpt-oss:120b")], api_key=CLOUD_KEY)
    with ServerThread(cloud.app) as up:
        config = make_config(
            {
                "providers": [
                    {"name": "ollama-cloud", "type": "ollama", "base_url": up.url, "api_key": CLOUD_KEY}
                ]
            }
        )
        with GatewayServer(config, home=tmp_path) as first:
            body = ENTRY | {"input_price": 1_000_000.0}
            created = httpx.post(first.admin_url + "/admin/catalog", json=body, headers=first.headers())
            assert created.status_code == 201
        with GatewayServer(config, home=tmp_path) as second:
            setup = Setup(second, cloud)
            assert setup.chat("gpt-oss:120b").status_code == 200
            (row,) = usage_rows(second, 1)
    assert row["cost_usd"] == pytest.approx(row["prompt_tokens"] * 1.0)
