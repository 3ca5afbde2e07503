"""The console's server side against a live gateway: the page and its headers, sign-in and the
session cookie, CSRF on every state-changing admin call, sessions ending with their key, the
smaller view of a user key, and the admin endpoints the pages read (series, route plan,
check now, pull, playground)."""

from __future__ import annotations

import contextlib
import logging

import httpx
import orjson
import pytest

from corral.console.setup import CSP
from tests.console.conftest import Stack, sign_in, usage_written, wait_until
from tests.emulators.common import Fault
from tests.support.gateway import GatewayServer, make_config

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}


def test_the_page_and_its_files_carry_the_security_headers(stack: Stack) -> None:
    page = httpx.get(stack.admin + "/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    src = page.text.split('src="', 1)[1].split('"', 1)[0]
    assert src.startswith("/console/assets/") and src.endswith("/app.js")
    asset = httpx.get(stack.admin + src, headers={"Accept-Encoding": "gzip"})
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert "immutable" in asset.headers["cache-control"]
    again = httpx.get(stack.admin + src, headers={"If-None-Match": asset.headers["etag"]})
    assert again.status_code == 304
    stale = httpx.get(stack.admin + src.replace(src.split("/")[3], "0" * 16))
    assert stale.status_code == 404
    assert (
        httpx.get(stack.admin + "/admin/providers", headers=stack.gateway.headers()).headers["cache-control"]
        == "no-store"
    )


def test_sign_in_sets_a_strict_http_only_cookie_and_never_echoes_the_key(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = httpx.post(stack.admin + "/console/session", json={"key": stack.gateway.key})
    assert resp.status_code == 200
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("corral_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags and "secure" not in flags
    assert stack.gateway.key not in resp.text and stack.gateway.key not in cookie
    assert resp.json()["principal"]["scope"] == "admin"
    assert stack.gateway.key not in caplog.text
    behind_tls = httpx.post(
        stack.admin + "/console/session", json={"key": stack.gateway.key},
        headers={"X-Forwarded-Proto": "https"},
    )  # fmt: skip
    tls_cookie = behind_tls.headers["set-cookie"]
    tls_flags = {p.strip().lower() for p in tls_cookie.split(";")[1:]}
    assert tls_cookie.startswith("__Host-corral_session=") and {"secure", "path=/"} <= tls_flags
    assert not any(flag.startswith("domain") for flag in tls_flags)
    token, csrf = behind_tls.cookies["__Host-corral_session"], behind_tls.json()["csrf"]
    over_tls = {"X-Forwarded-Proto": "https", "X-CSRF-Token": csrf}
    for name, proto, status in [("__Host-corral_session", "https", 200), ("corral_session", "https", 401),
                                ("__Host-corral_session", "http", 401)]:  # fmt: skip
        resp = httpx.get(
            stack.admin + "/admin/keys",
            cookies={name: token},
            headers={**over_tls, "X-Forwarded-Proto": proto},
        )
        assert resp.status_code == status, (name, proto)


def test_a_wrong_key_is_refused_without_a_session(stack: Stack) -> None:
    resp = httpx.post(stack.admin + "/console/session", json={"key": "gw_not_a_real_key"})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "sign_in_failed"
    assert "set-cookie" not in resp.headers
    assert "gw_not_a_real_key" not in resp.text


def test_the_cookie_reaches_the_admin_api_and_state_changes_need_the_csrf_token(stack: Stack) -> None:
    client, csrf = sign_in(stack.admin, stack.gateway.key)
    with contextlib.closing(client):
        assert client.get("/admin/providers").status_code == 403  # the cookie alone: nothing
        assert client.get("/admin/providers", headers={"X-CSRF-Token": csrf}).status_code == 200
        refused = client.post("/admin/keys", json={"name": "no csrf"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        wrong = client.post("/admin/keys", json={"name": "bad"}, headers={"X-CSRF-Token": csrf[:-1] + "x"})
        assert wrong.status_code == 403
        other_site = client.post(
            "/admin/keys", json={"name": "x"}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        )
        assert other_site.status_code == 403 and other_site.json()["error"]["code"] == "cross_origin"
        for method in ("PATCH", "DELETE"):
            assert client.request(method, "/admin/keys/AAAAAAAA", json={}).status_code == 403
        made = client.post("/admin/keys", json={"name": "with csrf"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201
        listed = client.get("/admin/keys", headers={"X-CSRF-Token": csrf}).json()["data"]
        assert "with csrf" in [k["name"] for k in listed] and "no csrf" not in [k["name"] for k in listed]
        assert client.get("/console/session").status_code == 403  # not even who it is, nor the token
        session = client.get("/console/session", headers={"X-CSRF-Token": csrf}).json()
        assert "csrf" not in session and session["principal"]["master"] is True


def test_a_bearer_key_needs_no_csrf_token(stack: Stack) -> None:
    resp = httpx.post(stack.admin + "/admin/keys", json={"name": "api"}, headers=stack.gateway.headers())
    assert resp.status_code == 201


def test_the_data_plane_never_honours_the_cookie(stack: Stack) -> None:
    client, _ = sign_in(stack.admin, stack.gateway.key)
    cookie = client.cookies.get("corral_session")
    client.close()
    resp = httpx.post(stack.gateway.v1 + "/chat/completions", json=CHAT, cookies={"corral_session": cookie})
    assert resp.status_code == 401


def test_revoking_the_key_ends_its_session(stack: Stack) -> None:
    key, key_id = stack.key(scope="admin")
    client, csrf = sign_in(stack.admin, key)
    with contextlib.closing(client):
        assert client.get("/admin/keys", headers={"X-CSRF-Token": csrf}).status_code == 200
        revoked = httpx.delete(stack.admin + f"/admin/keys/{key_id}", headers=stack.gateway.headers())
        assert revoked.status_code == 200
        after = client.get("/admin/keys", headers={"X-CSRF-Token": csrf})
        assert after.status_code == 401 and after.json()["error"]["code"] == "session_expired"


def test_changing_the_scope_of_the_key_ends_its_session(stack: Stack) -> None:
    key, key_id = stack.key(scope="admin")
    client, csrf = sign_in(stack.admin, key)
    with contextlib.closing(client):
        httpx.patch(
            stack.admin + f"/admin/keys/{key_id}", json={"scope": "user"}, headers=stack.gateway.headers()
        )
        assert client.get("/console/api/me", headers={"X-CSRF-Token": csrf}).status_code == 401


def test_sign_out_needs_the_token_and_ends_the_session(stack: Stack) -> None:
    client, csrf = sign_in(stack.admin, stack.gateway.key)
    with contextlib.closing(client):
        assert client.delete("/console/session").status_code == 403
        cookie = client.cookies.get("corral_session")
        out = client.delete("/console/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200 and "corral_session=" in out.headers["set-cookie"]
        stale = httpx.get(stack.admin + "/admin/keys", cookies={"corral_session": cookie})
        assert stale.status_code == 401


def test_a_user_key_sees_only_its_own_view(stack: Stack) -> None:
    key, key_id = stack.key(scope="user", models=["chat"], max_budget=5, budget_period="1d")
    client, csrf = sign_in(stack.admin, key)
    with contextlib.closing(client):
        for path in ("/admin/providers", "/admin/keys", "/admin/usage", "/admin/audit", "/admin/health"):
            assert (
                client.get(path, headers={"X-CSRF-Token": csrf}).json()["error"]["code"] == "admin_required"
            ), path
        denied = client.post("/admin/playground/chat", json=CHAT, headers={"X-CSRF-Token": csrf})
        assert denied.status_code == 403
        answer = client.post("/console/api/chat", json=CHAT, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 200 and answer.headers["x-corral-provider"].startswith("gpu-")
        other = client.post(
            "/console/api/chat", json={**CHAT, "model": "openai/gpt-4o-mini"}, headers={"X-CSRF-Token": csrf}
        )
        assert other.status_code == 403 and other.json()["error"]["code"] == "model_not_allowed"
        models = client.get("/console/api/models", headers={"X-CSRF-Token": csrf}).json()
        assert [m["id"] for m in models["data"]] == ["chat"]
        me = client.get("/console/api/me", headers={"X-CSRF-Token": csrf}).json()
        assert me["principal"]["key_id"] == key_id and me["principal"]["scope"] == "user"
        assert me["budget"]["max_budget"] == 5 and me["budget"]["period"] == "1d"


def test_the_playground_streams_with_who_answered_and_what_it_cost(stack: Stack) -> None:
    body = {**CHAT, "model": "openai/gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST", stack.admin + "/admin/playground/chat", json=body, headers=stack.gateway.headers()
    ) as r:
        assert r.status_code == 200
        assert r.headers["x-corral-provider"] == "openai" and r.headers["x-corral-attempts"] == "1"
        text = r.read().decode()
    assert "data: [DONE]" in text
    event = text.rsplit("event: corral\ndata: ", 1)[1]
    usage = orjson.loads(event.strip())
    assert usage["provider"] == "openai" and usage["completion_tokens"] > 0 and not usage["estimated"]
    assert usage["cost_usd"] > 0 and usage["ttft_ms"] is not None


def test_the_playground_shows_a_fallback(stack: Stack) -> None:
    stack.gpu_b.model_faults["qwen3:0.6b"] = Fault("status", status=500, message="boom")
    try:
        resp = httpx.post(
            stack.admin + "/admin/playground/chat",
            json={**CHAT, "model": "flaky"},
            headers=stack.gateway.headers(),
        )
    finally:
        stack.gpu_b.model_faults.clear()
    assert resp.status_code == 200
    assert resp.headers["x-corral-fallback"] == "openai/gpt-4o-mini"
    assert orjson.loads(resp.headers["x-corral-usage"])["fallback"] == "openai/gpt-4o-mini"


def test_usage_series_buckets_requests_by_provider(stack: Stack) -> None:
    written = usage_written(stack)
    for _ in range(3):
        assert httpx.post(stack.gateway.v1 + "/chat/completions", json=CHAT, headers=stack.gateway.headers())
    wait_until(lambda: usage_written(stack) >= written + 3)
    resp = httpx.get(
        stack.admin + "/admin/usage/series", params={"last": "1h", "step": "1m", "group_by": "provider"},
        headers=stack.gateway.headers(),
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["step"] == 60 and data["group_by"] == ["provider"]
    assert sum(p["requests"] for p in data["data"]) >= 3
    assert {"t", "provider", "requests", "cost_usd", "errors", "latency_p50_ms", "latency_p95_ms"} <= set(
        data["data"][0]
    )
    assert (data["top"], data["top_by"]) == (10, "cost")  # a series by one dimension: the first 10
    for bad in ({"top": "0"}, {"top": "101"}, {"top_by": "latency"}):
        refused = httpx.get(
            stack.admin + "/admin/usage/series",
            params={"last": "1h", "group_by": "provider", **bad},
            headers=stack.gateway.headers(),
        )
        assert refused.status_code == 400 and refused.json()["error"]["param"] in ("top", "top_by"), bad
    too_fine = httpx.get(
        stack.admin + "/admin/usage/series",
        params={"last": "7d", "step": "1s"},
        headers=stack.gateway.headers(),
    )
    assert too_fine.status_code == 400 and too_fine.json()["error"]["param"] == "step"


def test_the_route_plan_lists_pools_targets_and_their_state(stack: Stack) -> None:
    resp = httpx.get(stack.admin + "/admin/route", params={"model": "chat"}, headers=stack.gateway.headers())
    assert resp.status_code == 200, resp.text
    pools = resp.json()["pools"]
    assert [p["name"] for p in pools] == ["chat", "openai/gpt-4o-mini"]
    first = {t["provider"]: t for t in pools[0]["targets"]}
    assert first["gpu-a"]["warm"] is True and first["gpu-b"]["warm"] is False
    assert first["gpu-a"]["rank"] == 1
    missing = httpx.get(
        stack.admin + "/admin/route", params={"model": "nope"}, headers=stack.gateway.headers()
    )
    assert missing.status_code == 404


def test_check_now_probes_the_instance(stack: Stack) -> None:
    before = len(stack.gpu_b.requests_to("/api/version"))
    resp = httpx.post(stack.admin + "/admin/providers/gpu-b/check", headers=stack.gateway.headers())
    assert resp.status_code == 200 and resp.json()["name"] == "gpu-b" and resp.json()["last_check_ok"]
    assert len(stack.gpu_b.requests_to("/api/version")) == before + 1


def test_pull_streams_progress_per_instance_then_a_summary(stack: Stack) -> None:
    body = {"model": "phi4:latest", "instances": ["gpu-a", "gpu-b"]}
    resp = httpx.post(stack.admin + "/admin/models/pull", json=body, headers=stack.gateway.headers())
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in resp.text.splitlines()]
    assert {line.get("instance") for line in lines[:-1]} == {"gpu-a", "gpu-b"}
    assert any(line.get("total") and line.get("completed") == line["total"] for line in lines)
    assert lines[-1] == {"status": "success", "instances": ["gpu-a", "gpu-b"]}
    assert "phi4:latest" in stack.gpu_a.models and "phi4:latest" in stack.gpu_b.models


def test_failed_sign_ins_are_slowed_down(tmp_path_factory: pytest.TempPathFactory) -> None:
    with GatewayServer(make_config({}, demo=True), home=tmp_path_factory.mktemp("throttle")) as gw:
        assert gw.app is not None
        gw.app.parts.throttle._clock = lambda: 0.0  # time stands still: the wait never runs out
        statuses = [
            httpx.post(gw.admin_url + "/console/session", json={"key": f"guess-{i}"}).status_code
            for i in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        blocked = httpx.post(gw.admin_url + "/console/session", json={"key": gw.key})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


def test_models_list_context_length_capabilities_and_where_each_is_loaded(stack: Stack) -> None:
    rows = httpx.get(stack.admin + "/admin/models", headers=stack.gateway.headers()).json()["data"]
    found = {r["id"]: r for r in rows if r["type"] == "discovered"}
    on_a, on_b = found["gpu-a/llama3.2:latest"], found["gpu-b/llama3.2:latest"]
    assert on_a["context_length"] == 131072 and on_a["capabilities"] == ["completion", "tools"]
    assert on_a["loaded"] is True and on_a["loaded_context"] == 8192 and on_a["loaded_until"]
    assert on_b["loaded"] is False
    assert on_a["quantization"] == "Q4_K_M" and on_a["size"] > 0
    assert found["openai/gpt-4o-mini"]["price"] == {"input": 150, "output": 600}
    shows = len(stack.gpu_a.requests_to("/api/show"))
    httpx.get(stack.admin + "/admin/models", headers=stack.gateway.headers())
    assert len(stack.gpu_a.requests_to("/api/show")) == shows  # remembered by digest
