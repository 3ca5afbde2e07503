"""/admin/aliases on both databases: CRUD, PATCH semantics, whole-config validation, audit."""

from __future__ import annotations

from unittest import mock

from corral.errors import ConfigError
from tests.http.admin.conftest import Live
from tests.http.admin.test_providers import error


def test_alias_crud_and_patch_semantics(live: Live) -> None:
    c = live.http
    created = c.post(
        "/admin/aliases",
        json={
            "name": "team/fast",
            "target": "yaml-gpu/llama3.2",
            "fallbacks": ["demo/echo"],
            "num_ctx": 8192,
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["managed_by"] == "api" and created.json()["num_ctx"] == 8192
    assert live.chat("team/fast").status_code == 200  # applied at once

    listed = {a["name"]: a for a in c.get("/admin/aliases").json()["data"]}
    assert listed["chat"]["managed_by"] == "config" and listed["team/fast"]["managed_by"] == "api"
    assert listed["chat"]["targets"][0]["target"] == "yaml-gpu/llama3.2"

    kept = c.patch("/admin/aliases/team/fast", json={"strategy": "priority"}).json()
    assert kept["num_ctx"] == 8192 and kept["strategy"] == "priority" and kept["fallbacks"] == ["demo/echo"]
    cleared = c.patch("/admin/aliases/team/fast", json={"num_ctx": None, "fallbacks": None}).json()
    assert "num_ctx" not in cleared and "fallbacks" not in cleared and cleared["strategy"] == "priority"
    pool = c.patch("/admin/aliases/team/fast", json={"targets": ["demo/echo", "yaml-gpu/llama3.2"]}).json()
    assert "target" not in pool and len(pool["targets"]) == 2  # 'targets' replaced 'target'
    route = live.gw.gateway.catalog.route("team/fast")
    assert [t.provider for t in route.targets] == ["demo", "yaml-gpu"] and route.strategy == "priority"

    assert c.delete("/admin/aliases/team/fast").json() == {"name": "team/fast", "deleted": True}
    assert live.chat("team/fast").status_code == 404
    assert error(c.get("/admin/aliases/team/fast"), 404)["code"] == "alias_not_found"

    entries = c.get("/admin/audit", params={"target": "team/fast"}).json()["data"]
    assert [e["action"] for e in entries] == ["alias.delete"] + ["alias.update"] * 3 + ["alias.create"]
    assert entries[1]["before"]["target"] == "yaml-gpu/llama3.2" and "target" not in entries[1]["after"]


def test_aliases_are_validated_as_part_of_the_whole_config(live: Live) -> None:
    c = live.http
    cases = [
        ({"name": "a", "target": "nope/m"}, "names provider 'nope'"),
        ({"name": "a", "target": "demo/echo", "fallbacks": ["missing"]}, "'missing' is not a model alias"),
        ({"name": "a", "target": "demo/echo", "strategy": "coin-toss"}, "must be one of"),
        ({"name": "a", "target": "demo/echo", "colour": 1}, "Unknown field 'colour'"),
        ({"name": "a"}, "needs 'target"),
        ({"name": "corral/eco", "target": "demo/echo"}, "reserved"),
        ({"target": "demo/echo"}, "name"),
    ]
    for body, needle in cases:
        assert needle in error(c.post("/admin/aliases", json=body), 400)["message"], body
    # a loop through two API aliases is caught before anything is written
    assert c.post("/admin/aliases", json={"name": "a", "target": "demo/echo"}).status_code == 201
    assert (
        c.post("/admin/aliases", json={"name": "b", "target": "demo/echo", "fallbacks": ["a"]}).status_code
        == 201
    )
    loop = error(c.patch("/admin/aliases/a", json={"fallbacks": ["b"]}), 400)
    assert "loops" in loop["message"] and "a -> b -> a" in loop["message"]
    assert "fallbacks" not in c.get("/admin/aliases/a").json()
    in_use = error(c.delete("/admin/aliases/a"), 409)
    assert in_use["code"] == "alias_in_use" and "alias 'b'" in in_use["message"]
    assert (
        error(c.post("/admin/aliases", json={"name": "a", "target": "demo/echo"}), 409)["code"]
        == "alias_exists"
    )
    for resp in (
        c.post("/admin/aliases", json={"name": "chat", "target": "demo/echo"}),
        c.patch("/admin/aliases/chat", json={"num_ctx": 4}),
        c.delete("/admin/aliases/chat"),
    ):
        assert error(resp, 409)["code"] == "managed_by_config"


def test_a_change_that_fails_to_apply_is_rolled_back(live: Live) -> None:
    """If applying fails after the write (another replica changed the database in between),
    the write is undone and the caller gets the 400."""
    assert live.gw.app is not None
    plane = live.gw.app.parts.control
    with mock.patch.object(type(plane), "apply", side_effect=ConfigError("database: models: broken chain")):
        err = error(live.http.post("/admin/aliases", json={"name": "x", "target": "demo/echo"}), 400)
    assert err["message"] == "models: broken chain"
    assert error(live.http.get("/admin/aliases/x"), 404)["code"] == "alias_not_found"
    actions = [e["action"] for e in live.http.get("/admin/audit", params={"target": "x"}).json()["data"]]
    assert actions == ["alias.delete", "alias.create"]
