"""Routing rules by power level and tier: two keys of different tiers asking for corral/precision
reach different models (the official openai client, a real gateway with its control plane and an
emulated Ollama), and GET /admin/route explains the plan for a key named by its id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

RULES = [
    {"level": "precision", "tier": "gold", "model": "gpu/qwen3:0.6b"},
    {"level": "precision", "model": "gpu/llama3.2"},  # tier 'all': every other caller
    {"level": "eco", "tier": "gold", "models": ["gpu/llama3.2"]},
]


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[GatewayServer, OllamaEmulator]]:
    emu = OllamaEmulator()
    with ServerThread(emu.app) as server:
        config = {
            "providers": [{"name": "gpu", "type": "ollama", "base_url": server.url}],
            "router": {"health_interval": "60s", "rules": RULES},
        }
        with GatewayServer(make_config(config), home=tmp_path) as gateway:
            yield gateway, emu


def key(gw: GatewayServer, **fields: object) -> dict[str, str]:
    resp = httpx.post(gw.admin_url + "/admin/keys", json={"name": "k", **fields}, headers=gw.headers())
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def served(gw: GatewayServer, secret: str, model: str) -> str:
    client = openai.OpenAI(base_url=gw.v1, api_key=secret, max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "Echo: hi"
    return raw.headers["x-corral-model"]


def test_two_tiers_asking_for_precision_reach_different_models(
    gw: tuple[GatewayServer, OllamaEmulator],
) -> None:
    gateway, emu = gw
    gold, free, plain = key(gateway, tier="gold"), key(gateway, tier="free"), key(gateway)
    assert served(gateway, gold["key"], "corral/precision") == "qwen3:0.6b"
    assert served(gateway, free["key"], "corral/precision") == "llama3.2"  # no 'free' rules: 'all'
    assert served(gateway, plain["key"], "corral/precision") == "llama3.2"
    assert [(r.json or {})["model"] for r in emu.requests_to("/api/chat")] == [
        "qwen3:0.6b",
        "llama3.2",
        "llama3.2",
    ]
    # a level with rules for one tier only: the others have nothing to route to
    assert served(gateway, gold["key"], "corral/eco") == "llama3.2"
    with pytest.raises(openai.NotFoundError):
        served(gateway, free["key"], "corral/eco")


def test_admin_route_explains_the_plan_for_a_key(gw: tuple[GatewayServer, OllamaEmulator]) -> None:
    gateway, _ = gw
    gold = key(gateway, tier="gold")

    def route(**query: str) -> httpx.Response:
        return httpx.get(gateway.admin_url + "/admin/route", params=query, headers=gateway.headers())

    for name in (gold["id"], f"gw_{gold['id']}…"):  # by id, or by its preview
        body = route(model="corral/precision", key=name).json()
        assert body["key"] == {"id": gold["id"], "name": "k", "tier": "gold"} and body["tier"] == "gold"
        (pool,) = body["pools"]
        assert pool["name"] == "gpu/qwen3:0.6b"
        assert pool["why"] == "rule for corral/precision, tier 'gold': priority 0, weight 1"
        (target,) = pool["targets"]
        assert target["why"].startswith("rank 1, priority 0") and "in flight" in target["why"]
    (pool,) = route(model="corral/precision").json()["pools"]
    assert pool["name"] == "gpu/llama3.2" and "tier 'all'" in pool["why"]
    refused = route(model="corral/precision", key=gold["key"])  # the key itself: refused, not echoed
    assert refused.status_code == 400 and gold["key"] not in refused.text
    assert "never the key itself" in refused.json()["error"]["message"]


def test_rules_made_through_the_admin_api_apply_at_once_and_are_audited(
    gw: tuple[GatewayServer, OllamaEmulator],
) -> None:
    gateway, _ = gw
    admin = httpx.Client(base_url=gateway.admin_url, headers=gateway.headers(), timeout=20)
    silver = key(gateway, tier="silver")
    assert served(gateway, silver["key"], "corral/precision") == "llama3.2"  # the 'all' rule
    listed = admin.get("/admin/rules").json()["data"]
    assert [r["managed_by"] for r in listed] == ["config"] * 3
    bad = admin.post("/admin/rules", json={"level": "precision", "tier": "silver", "model": "nothing"})
    assert bad.status_code == 400 and "'nothing' is not a model alias" in bad.json()["error"]["message"]
    made = admin.post(
        "/admin/rules", json={"level": "precision", "tier": "silver", "model": "gpu/qwen3:0.6b"}
    )
    assert made.status_code == 201, made.text
    rule = made.json()
    assert (rule["tier"], rule["priority"], rule["weight"], rule["managed_by"]) == ("silver", 0, 1.0, "api")
    assert served(gateway, silver["key"], "corral/precision") == "qwen3:0.6b"  # applied at once
    assert [r["id"] for r in admin.get("/admin/rules").json()["data"]][-1] == rule["id"]
    assert admin.delete(f"/admin/rules/{rule['id']}").json() == {"id": rule["id"], "deleted": True}
    assert served(gateway, silver["key"], "corral/precision") == "llama3.2"
    assert admin.delete(f"/admin/rules/{rule['id']}").status_code == 404
    actions = [e["action"] for e in admin.get("/admin/audit").json()["data"]]
    assert "rule.create" in actions and "rule.delete" in actions
