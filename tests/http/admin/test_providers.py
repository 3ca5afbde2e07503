"""/admin/providers on both databases: CRUD, PATCH semantics, audit rows, live effect, tests."""

from __future__ import annotations

import json

import httpx

from corral.security.crypto import preview
from tests.http.admin.conftest import YAML_SECRET, Live
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import free_port

SECRET = "sk-lab-PLAINTEXT-8c7b6a5948372615a4b3"
HEADER_SECRET = "hdr-PLAINTEXT-5e4d3c2b1a"


def error(resp: httpx.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body  # type: ignore[no-any-return]


def lab(live: Live, **extra: object) -> dict[str, object]:
    return {"name": "lab", "type": "ollama", "base_url": live.upstream, **extra}


def test_crud_with_patch_semantics_and_audit(live: Live) -> None:
    c = live.http
    created = c.post(
        "/admin/providers",
        json=lab(live, api_key=SECRET, headers={"X-Tenant": HEADER_SECRET}, priority=2, weight=3),
    )
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["managed_by"] == "api" and view["priority"] == 2 and view["weight"] == 3
    assert view["api_key_preview"] == preview(SECRET) and view["has_api_key"] is True
    assert view["header_names"] == ["X-Tenant"]
    assert "api_key" not in view and "headers" not in view

    listed = {p["name"]: p for p in c.get("/admin/providers").json()["data"]}
    assert set(listed) == {"yaml-gpu", "demo", "lab"}
    assert listed["yaml-gpu"]["managed_by"] == "config" and listed["lab"]["managed_by"] == "api"
    assert listed["yaml-gpu"]["api_key_preview"] == preview(YAML_SECRET)

    # omitted fields are unchanged
    patched = c.patch("/admin/providers/lab", json={"weight": 5})
    assert patched.status_code == 200, patched.text
    assert patched.json()["priority"] == 2 and patched.json()["weight"] == 5
    assert patched.json()["has_api_key"] is True and patched.json()["header_names"] == ["X-Tenant"]
    # null clears (back to the default)
    cleared = c.patch("/admin/providers/lab", json={"priority": None, "api_key": None}).json()
    assert "priority" not in cleared and cleared["weight"] == 5
    assert cleared["has_api_key"] is False and cleared["api_key_preview"] is None
    assert cleared["header_names"] == ["X-Tenant"]
    assert live.gw.gateway.config.providers[-1].priority == 0  # applied to the running gateway

    # invalid changes are refused with the loader's message, and change nothing
    bad = error(c.patch("/admin/providers/lab", json={"timeout": "soon"}), 400)
    assert bad["param"] == "timeout" and "duration" in bad["message"]
    unknown = error(c.patch("/admin/providers/lab", json={"colour": "red"}), 400)
    assert unknown["param"] == "colour" and "Unknown field 'colour'" in unknown["message"]
    assert "rename" in error(c.patch("/admin/providers/lab", json={"name": "lab2"}), 400)["message"]
    assert error(c.patch("/admin/providers/lab", json={"base_url": None}), 400)["param"] == "base_url"
    assert c.get("/admin/providers/lab").json()["weight"] == 5

    assert c.delete("/admin/providers/lab").json() == {"name": "lab", "deleted": True}
    assert error(c.get("/admin/providers/lab"), 404)["code"] == "provider_not_found"
    assert error(c.delete("/admin/providers/lab"), 404)["code"] == "provider_not_found"

    entries = c.get("/admin/audit", params={"target": "lab"}).json()["data"]
    assert [e["action"] for e in entries] == [
        "provider.delete",
        "provider.update",
        "provider.update",
        "provider.create",
    ]
    assert {e["actor"] for e in entries} == {"master"}
    create, delete = entries[-1], entries[0]
    assert create["before"] is None and create["after"]["api_key_preview"] == preview(SECRET)
    assert delete["after"] is None and delete["before"]["name"] == "lab"
    assert entries[2]["before"]["weight"] == 3 and entries[2]["after"]["weight"] == 5
    text = json.dumps(entries)
    assert SECRET not in text and HEADER_SECRET not in text
    assert entries[0]["at"] >= entries[-1]["at"]


def test_create_is_validated_like_the_yaml_file(live: Live) -> None:
    c = live.http
    cases = [
        (lab(live, base_url="ftp://host"), "base_url"),
        (lab(live, type="vllm"), "type"),
        (lab(live, name="a/b"), "name"),
        (lab(live, nonsense=1), "nonsense"),
        (lab(live, keep_alive=True), "keep_alive"),
        ({"name": "lab", "type": "ollama"}, "base_url"),
        (lab(live, api_key_preview="x"), "api_key_preview"),
        (lab(live, base_url="http://h/" + "x" * 3000), "base_url"),
        (lab(live, base_url="https://l["), "base_url"),
        (lab(live, base_url="http://h:99999"), "base_url"),
        (lab(live, headers={"X": "a\x00b"}), "headers.X"),
    ]
    for body, param in cases:
        assert error(c.post("/admin/providers", json=body), 400)["param"] == param, body
    for raw in (b"{", b"[1]", b"", b'"x"'):
        assert error(c.post("/admin/providers", content=raw), 400)["code"] == "invalid_json"
    assert c.post("/admin/providers", json=lab(live)).status_code == 201
    assert error(c.post("/admin/providers", json=lab(live)), 409)["code"] == "provider_exists"


def test_config_file_providers_are_read_only(live: Live) -> None:
    c = live.http
    yaml = c.get("/admin/providers/yaml-gpu").json()
    assert yaml["managed_by"] == "config" and yaml["has_api_key"] is True
    assert YAML_SECRET not in json.dumps(yaml)
    for resp in (
        c.post("/admin/providers", json={"name": "yaml-gpu", "type": "ollama", "base_url": live.upstream}),
        c.patch("/admin/providers/yaml-gpu", json={"priority": 1}),
        c.delete("/admin/providers/yaml-gpu"),
        c.delete("/admin/providers/demo"),
    ):
        err = error(resp, 409)
        assert err["code"] == "managed_by_config" and "config file" in err["message"]


def test_changes_apply_to_the_running_gateway_at_once(live: Live) -> None:
    assert live.chat("lab/llama3.2").status_code == 404
    assert live.http.post("/admin/providers", json=lab(live)).status_code == 201
    answer = live.chat("lab/llama3.2")
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert live.http.delete("/admin/providers/lab").status_code == 200
    gone = live.chat("lab/llama3.2")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"


def test_delete_is_refused_while_an_alias_uses_the_provider(live: Live) -> None:
    c = live.http
    assert c.post("/admin/providers", json=lab(live)).status_code == 201
    alias = {"name": "team", "target": "demo/echo", "fallbacks": ["lab/llama3.2"]}
    assert c.post("/admin/aliases", json=alias).status_code == 201
    err = error(c.delete("/admin/providers/lab"), 409)
    assert err["code"] == "provider_in_use" and "alias 'team'" in err["message"]
    assert c.delete("/admin/aliases/team").status_code == 200
    assert c.delete("/admin/providers/lab").status_code == 200


def test_the_test_endpoint_probes_the_stored_config(live: Live) -> None:
    c = live.http
    assert c.post("/admin/providers", json=lab(live, api_key=SECRET)).status_code == 201
    ok = c.post("/admin/providers/lab/test", json={"base_url": "http://169.254.169.254"})
    assert ok.status_code == 200
    result = ok.json()
    assert result["success"] is True and result["error"] is None
    assert result["models_found"] == len(live.emulator.models) and result["latency_ms"] >= 0
    assert c.post("/admin/providers/yaml-gpu/test").json()["success"] is True
    assert c.post("/admin/providers/demo/test").json()["models_found"] == 1

    dead = f"http://127.0.0.1:{free_port()}"
    body = {"name": "dead", "type": "openai", "base_url": dead, "api_key": SECRET}
    assert c.post("/admin/providers", json=body).status_code == 201
    failed = c.post("/admin/providers/dead/test").json()
    assert failed["success"] is False and failed["models_found"] is None
    assert "unreachable" in failed["error"] and SECRET not in failed["error"]
    assert error(c.post("/admin/providers/nope/test"), 404)["code"] == "provider_not_found"


def test_without_a_data_directory_the_api_reads_the_config_and_refuses_changes() -> None:
    config = make_config({"providers": [{"name": "gpu", "type": "ollama", "base_url": "http://127.0.0.1:9"}]})
    with GatewayServer(config) as gw, httpx.Client(base_url=gw.admin_url, headers=gw.headers()) as c:
        assert [p["name"] for p in c.get("/admin/providers").json()["data"]] == ["gpu"]
        assert c.get("/admin/providers/gpu").json()["managed_by"] == "config"
        body = {"name": "lab", "type": "ollama", "base_url": "http://127.0.0.1:9"}
        assert error(c.post("/admin/providers", json=body), 503)["code"] == "control_plane_disabled"
        assert error(c.get("/admin/keys"), 503)["code"] == "control_plane_disabled"
        assert c.get("/admin/models").status_code == 200
