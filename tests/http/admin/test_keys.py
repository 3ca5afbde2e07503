"""/admin/keys on both databases: the key lifecycle, PATCH semantics, and the cached hot path."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event

from tests.http.admin.conftest import Live
from tests.http.admin.test_providers import error


def issue(live: Live, **fields: Any) -> dict[str, Any]:
    resp = live.http.post("/admin/keys", json=fields)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_key_lifecycle_create_use_restrict_expire_revoke(live: Live) -> None:
    c = live.http
    issued = issue(live, name="ci", owner="alice", rpm=60)
    key, key_id = issued["key"], issued["id"]
    assert key.startswith(f"gw_{key_id}_") and issued["scope"] == "user" and issued["rpm"] == 60
    # shown once: never again, nor its hash
    for resp in (c.get("/admin/keys"), c.get(f"/admin/keys/{key_id}"), c.get("/admin/audit")):
        assert key not in resp.text and key[12:-6] not in resp.text and "key_hash" not in resp.text
    assert c.get(f"/admin/keys/{key_id}").json()["owner"] == "alice"

    assert live.chat("demo/echo", key).status_code == 200
    assert (
        error(live.http.get("/admin/providers", headers={"Authorization": f"Bearer {key}"}), 403)["code"]
        == "admin_required"
    )

    only_x = issue(live, name="x-only", models=["x"])["key"]
    denied = error(live.chat("demo/echo", only_x), 403)
    assert denied["code"] == "model_not_allowed"

    past = int(time.time()) - 60
    assert c.patch(f"/admin/keys/{key_id}", json={"expires_at": past}).status_code == 200
    assert error(live.chat("demo/echo", key), 401)["code"] == "key_expired"
    assert c.patch(f"/admin/keys/{key_id}", json={"expires_at": None}).json()["expires_at"] is None
    assert live.chat("demo/echo", key).status_code == 200
    assert c.patch(f"/admin/keys/{key_id}", json={"enabled": False}).status_code == 200
    assert error(live.chat("demo/echo", key), 401)["code"] == "key_disabled"
    assert c.patch(f"/admin/keys/{key_id}", json={"enabled": True}).status_code == 200
    assert live.chat("demo/echo", key).status_code == 200

    assert c.delete(f"/admin/keys/{key_id}").json() == {"id": key_id, "deleted": True}
    assert error(live.chat("demo/echo", key), 401)["code"] == "invalid_api_key"
    assert error(c.get(f"/admin/keys/{key_id}"), 404)["code"] == "gateway_key_not_found"
    actions = [e["action"] for e in c.get("/admin/audit", params={"target": key_id}).json()["data"]]
    assert actions == ["key.delete", *["key.update"] * 4, "key.create"]


def test_admin_keys_act_as_themselves_in_the_audit_log(live: Live) -> None:
    admin = issue(live, name="ops", scope="admin")
    headers = {"Authorization": f"Bearer {admin['key']}"}
    made = live.http.post("/admin/keys", json={"name": "made-by-ops"}, headers=headers)
    assert made.status_code == 201
    entry = live.http.get("/admin/audit", params={"target": made.json()["id"]}).json()["data"][0]
    assert entry["actor"] == admin["id"] and entry["action"] == "key.create"
    listed = live.http.get("/admin/keys", params={"owner": "nobody"}).json()["data"]
    assert listed == []


def test_patch_keeps_omitted_fields_and_clears_nulls(live: Live) -> None:
    c = live.http
    key_id = issue(
        live, name="p", tier="gold", rpm=5, metadata={"team": "ml"}, expires_at="2099-01-01T00:00:00Z"
    )["id"]
    after = c.patch(f"/admin/keys/{key_id}", json={"tpm": 1000}).json()
    assert (after["rpm"], after["tpm"], after["tier"]) == (5, 1000, "gold")
    assert after["metadata"] == {"team": "ml"} and after["expires_at"].startswith("2099-01-01T00:00:00")
    after = c.patch(f"/admin/keys/{key_id}", json={"rpm": None, "tier": None, "models": ["a", "b"]}).json()
    assert (after["rpm"], after["tpm"], after["tier"], after["models"]) == (None, 1000, None, ["a", "b"])
    assert c.patch(f"/admin/keys/{key_id}", json={"models": None}).json()["models"] is None


def test_key_input_is_validated(live: Live) -> None:
    c = live.http
    cases = [
        ({"scope": "root"}, "scope"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": 1e20}, "expires_at"),
        ({"models": "demo/echo"}, "models"),
        ({"rpm": -1}, "limits.rpm"),
        ({"rpm": 1.5}, "limits.rpm"),
        ({"enabled": "yes"}, "enabled"),
        ({"metadata": [1]}, "metadata"),
        ({"name": "x" * 300}, "name"),
        ({"limits": {"rpm": 1}}, "limits"),
        ({"key": "gw_mine"}, "key"),
    ]
    for body, param in cases:
        assert error(c.post("/admin/keys", json=body), 400)["param"] == param, body
    naive = error(c.post("/admin/keys", json={"expires_at": "2030-01-01T00:00:00"}), 400)
    assert "time zone" in naive["message"]
    key_id = issue(live, name="v")["id"]
    assert error(c.patch(f"/admin/keys/{key_id}", json={"scope": None}), 400)["param"] == "scope"
    assert error(c.patch("/admin/keys/not-an-id", json={}), 404)["code"] == "gateway_key_not_found"
    assert error(c.delete("/admin/keys/AAAAAAAA"), 404)["code"] == "gateway_key_not_found"


def test_limits_are_checked_when_a_key_is_saved(live: Live) -> None:
    c = live.http
    for body in ({"name": "b", "max_budget": 10, "budget_period": "fortnight"}, {"budget_period": "0d"}):
        err = error(c.post("/admin/keys", json=body), 400)
        assert err["param"] == "limits.budget_period" and err["type"] == "invalid_request_error"
        assert "budget_period" in err["message"] and "1d, 7d, 30d, 1mo" in err["message"]
    for name in ("rpm", "tpm", "max_parallel", "max_budget"):
        err = error(c.post("/admin/keys", json={name: -1}), 400)
        assert err["param"] == f"limits.{name}" and "non-negative" in err["message"]
    assert c.get("/admin/keys").json()["data"] == []  # nothing was stored

    key = issue(live, name="b", max_budget=10, budget_period="1d")
    err = error(c.patch(f"/admin/keys/{key['id']}", json={"budget_period": "fortnight"}), 400)
    assert err["param"] == "limits.budget_period" and "monthly" in err["message"]
    stored = c.get(f"/admin/keys/{key['id']}").json()
    assert (stored["max_budget"], stored["budget_period"]) == (10, "1d")
    assert c.patch(f"/admin/keys/{key['id']}", json={"budget_period": "Weekly"}).json()["budget_period"] == (
        "weekly"
    )
    assert live.chat("demo/echo", key["key"]).status_code == 200


def test_key_checks_stay_off_the_database(live: Live) -> None:
    """Verifying a key is a cache lookup: 50 requests cause no gateway_keys query."""
    key = issue(live, name="hot")["key"]
    assert live.gw.app is not None
    engine = live.gw.app.parts.control.store.engine.sync_engine
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        for _ in range(50):
            assert live.chat("demo/echo", key).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert sum("gateway_keys" in statement for statement in seen) <= 1  # at most one background refresh
