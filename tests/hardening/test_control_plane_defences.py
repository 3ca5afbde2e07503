"""Attacks on the control plane (admin API, /metrics, the console) that failed, kept as plain
tests so they stay failed: session fixation, the cookie on the data plane, CSRF and CORS tricks,
spoofed client addresses, open redirects, asset path traversal, conflicting heads, a remote
control plane without TLS, a user key reaching past its own data, markup from upstreams and
users in every page (Chromium), secrets in pages and errors. The attacks that worked are the
xfails of ``test_control_plane_attacks``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.config.listeners import check_admin_host
from corral.config.schema import AdminConfig
from corral.errors import ConfigError
from tests.console.browser import Console
from tests.console.conftest import XSS, Stack, running_stack, sign_in, usage_written, wait_until
from tests.emulators.common import Fault
from tests.emulators.ollama import ModelSpec, OllamaEmulator
from tests.hardening.attackers import (
    CSP_WATCH,
    AttackerSite,
    admin_console,
    browser_or_skip,
    frozen_throttle,
    lone_gateway,
    user_key,
)
from tests.hardening.rawclient import RawConnection, request
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two Ollama emulators and an OpenAI emulator behind a gateway with its store."""
    with running_stack(tmp_path_factory.mktemp("defences")) as running:
        yield running


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with lone_gateway(tmp_path_factory.mktemp("lone")) as gw:
        yield gw


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_or_skip() as b:
        yield b


# -- (a) no key ------------------------------------------------------------------------------------


def test_a_session_token_the_attacker_chose_is_never_adopted(stack: Stack) -> None:
    chosen = "attacker-chosen-token-0123456789abcdefghijk"
    resp = httpx.post(
        stack.admin + "/console/session", json={"key": stack.gateway.key}, cookies={"corral_session": chosen}
    )
    issued = resp.cookies.get("corral_session")
    assert resp.status_code == 200 and issued and issued != chosen
    assert httpx.get(stack.admin + "/admin/keys", cookies={"corral_session": chosen}).status_code == 401
    again = httpx.post(
        stack.admin + "/console/session", json={"key": stack.gateway.key}, cookies={"corral_session": issued}
    )
    assert again.cookies.get("corral_session") not in (None, issued)
    assert httpx.get(stack.admin + "/admin/keys", cookies={"corral_session": issued}).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/models"), ("POST", "/api/pull"), ("GET", "/api/tags")]
)
def test_the_data_plane_ignores_the_console_cookie(stack: Stack, method: str, path: str) -> None:
    client, csrf = sign_in(stack.admin, stack.gateway.key)
    cookie = client.cookies.get("corral_session")
    client.close()
    assert cookie
    resp = httpx.request(
        method,
        stack.gateway.url + path,
        json={"model": "x"},
        cookies={"corral_session": cookie},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status_code == 401


def test_the_throttle_ignores_addresses_the_client_claims(lone: GatewayServer) -> None:
    claims = ("X-Forwarded-For", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "Forwarded")
    with frozen_throttle(lone):
        statuses = []
        for i in range(8):
            name = claims[i % len(claims)]
            value = f"for=10.0.0.{i}" if name == "Forwarded" else f"10.0.0.{i}"
            statuses.append(
                httpx.post(
                    lone.admin_url + "/console/session", json={"key": f"guess-{i}"}, headers={name: value}
                ).status_code
            )
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3


@pytest.mark.parametrize("size", [1, 31 * 1024 * 1024])
def test_an_oversized_sign_in_is_refused_from_its_head(stack: Stack, size: int) -> None:
    port = stack.gateway.admin_port
    with RawConnection(port) as conn:  # the head alone: the answer must not wait for the body
        resp = conn.request(
            request("POST", "/console/session", headers=f"Content-Length: {1024 * 1024 + size}\r\n")
        )
    assert resp.status == 413


def test_an_oversized_playground_call_is_refused_from_its_head(stack: Stack) -> None:
    key, _ = user_key(stack)
    length = 32 * 1024 * 1024 + 1
    with RawConnection(stack.gateway.admin_port) as conn:
        resp = conn.request(
            request(
                "POST",
                "/console/api/chat",
                headers=f"Authorization: Bearer {key}\r\nContent-Length: {length}\r\n",
            )
        )
    assert resp.status == 413


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example",
        "//evil.example/console",
        "/console//evil.example",
        "/\\evil.example",
        "/console/..//evil.example",
        "/%2F%2Fevil.example",
        "/console/%2F%2Fevil.example",
    ],
)
def test_no_redirect_leaves_the_console(stack: Stack, path: str) -> None:
    with RawConnection(stack.gateway.admin_port) as conn:
        resp = conn.request(request("GET", path))
    assert resp.header("location") in (None, "/console")


def test_the_console_redirects_only_to_itself(stack: Stack) -> None:
    for path in ("/", "/console/"):
        with RawConnection(stack.gateway.admin_port) as conn:
            resp = conn.request(request("GET", path, headers="Referer: http://evil.example/\r\n"))
        assert resp.status == 302 and resp.header("location") == "/console"


def test_asset_paths_never_leave_the_packaged_files(stack: Stack) -> None:
    shell = httpx.get(stack.admin + "/console").text
    build = shell.split("/console/assets/", 1)[1].split("/", 1)[0]
    base = f"/console/assets/{build}/"
    tricks = [
        "../setup.py",
        "%2e%2e/setup.py",
        "..%2fsetup.py",
        "..%5csetup.py",
        "lib/../../routes.py",
        "index.html",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "app.js%00.png",
        "APP.JS",
        "./app.js",
        "app.js/",
        "vendor/../../session.py",
        "static/app.js",
    ]
    for trick in tricks:
        with RawConnection(stack.gateway.admin_port) as conn:
            resp = conn.request(request("GET", base + trick))
        assert resp.status in (400, 404), (trick, resp.status)
        assert b"import " not in resp.body and b"<html" not in resp.body.lower()
    assert httpx.get(stack.admin + base + "app.js").status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        "Host: other\r\n",
        "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 2\r\nContent-Length: 3\r\n",
    ],
    ids=["two-hosts", "two-authorizations", "length-and-chunked", "two-lengths"],
)
def test_conflicting_heads_are_refused_on_the_control_plane(stack: Stack, extra: str) -> None:
    with RawConnection(stack.gateway.admin_port) as conn:
        conn.send(request("POST", "/console/session", headers=extra) + b"{}")
        resp = conn.response()
    assert resp.status == 400


def test_the_data_plane_serves_no_control_plane_path_even_with_the_master_key(stack: Stack) -> None:
    headers = stack.gateway.headers()
    for path in ("/admin/keys", "/console", "/console/session", "/metrics", "/admin/openapi.json"):
        resp = httpx.get(stack.gateway.url + path, headers=headers)
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/json")
        assert "gw_" not in resp.text and "<html" not in resp.text
    absolute = f"http://127.0.0.1:{stack.gateway.admin_port}/admin/keys"
    with RawConnection(stack.gateway.port) as conn:
        raw = conn.request(request("GET", absolute, headers=f"Authorization: Bearer {stack.gateway.key}\r\n"))
    assert raw.status in (400, 404) and b'"data"' not in raw.body


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "192.168.1.10", "gpu-box.lan", "127.0.0.1.nip.io"])
def test_a_remote_control_plane_needs_tls(host: str) -> None:
    with pytest.raises(ConfigError):
        check_admin_host(AdminConfig(host=host))
    with pytest.raises(ConfigError):
        make_config({"admin": {"host": host}})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_a_loopback_control_plane_needs_no_tls(host: str) -> None:
    check_admin_host(AdminConfig(host=host))


# -- (b) a user-scope key --------------------------------------------------------------------------


def test_a_user_session_reaches_only_its_own_data(stack: Stack) -> None:
    mine, _ = user_key(stack, name="mine", models=["chat"])
    theirs, _ = user_key(stack, name="theirs")
    before = usage_written(stack)
    other = {**CHAT, "user": "their-private-user"}
    assert (
        httpx.post(
            stack.gateway.v1 + "/chat/completions",
            json=other,
            timeout=20,
            headers={"Authorization": f"Bearer {theirs}"},
        ).status_code
        == 200
    )
    wait_until(lambda: usage_written(stack) > before)
    seen = httpx.get(
        stack.admin + "/admin/usage", params={"group_by": "user"}, headers=stack.gateway.headers()
    )
    assert "their-private-user" in seen.text  # there is something to leak
    client, csrf = sign_in(stack.admin, mine)
    with contextlib.closing(client):
        for path in ("/console/api/usage", "/console/api/usage/series"):
            for params in (
                {"group_by": "user"},
                {"group_by": "key", "key": "*"},
                {"user": "their-private-user"},
            ):
                resp = client.get(path, params=params, headers={"X-CSRF-Token": csrf})
                assert resp.status_code in (200, 400) and "their-private-user" not in resp.text, (
                    path,
                    params,
                )
        models = client.get("/console/api/models", headers={"X-CSRF-Token": csrf}).json()
        assert {m["id"] for m in models["data"]} <= {"chat"} and models["power_levels"] == []
        forbidden = [
            {"model": "flaky", "messages": CHAT["messages"]},
            {"model": "gpu-a/llama3.2", "messages": CHAT["messages"]},
            {"model": "corral/eco", "messages": CHAT["messages"]},
        ]
        for body in forbidden:
            resp = client.post("/console/api/chat", json=body, headers={"X-CSRF-Token": csrf})
            assert resp.status_code == 403, body
        power = client.post(
            "/console/api/chat",
            json={"messages": CHAT["messages"]},
            headers={"X-CSRF-Token": csrf, "X-Corral-Power": "precision"},
        )
        assert power.status_code == 403
        for path in (
            "/admin/keys",
            "/admin/usage",
            "/admin/audit",
            "/admin/openapi.json",
            "/admin/models",
            "/admin/route?model=chat",
            "/metrics",
        ):
            resp = client.get(path, headers={"X-CSRF-Token": csrf})
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "admin_required", path
        posts: list[tuple[str, dict[str, Any]]] = [
            ("/admin/playground/chat", CHAT),
            ("/admin/providers/gpu-a/test", {}),
            ("/admin/providers/gpu-a/check", {}),
            ("/admin/models/pull", {"model": "x"}),
            ("/admin/providers", {"name": "mine", "type": "ollama", "base_url": "http://169.254.169.254"}),
        ]
        for path, body in posts:
            assert client.post(path, json=body, headers={"X-CSRF-Token": csrf}).status_code == 403, path
    pull = httpx.post(
        stack.gateway.url + "/api/pull", json={"model": "x"}, headers={"Authorization": f"Bearer {mine}"}
    )
    assert pull.status_code == 403


def test_a_session_follows_its_key_disabled_or_narrowed(stack: Stack) -> None:
    key, key_id = user_key(stack, models=["chat", "flaky"])
    client, csrf = sign_in(stack.admin, key)
    with contextlib.closing(client):
        admin = stack.gateway.headers()
        httpx.patch(stack.admin + f"/admin/keys/{key_id}", json={"models": ["flaky"]}, headers=admin)
        assert [
            m["id"] for m in client.get("/console/api/models", headers={"X-CSRF-Token": csrf}).json()["data"]
        ] == ["flaky"]
        httpx.patch(stack.admin + f"/admin/keys/{key_id}", json={"enabled": False}, headers=admin)
        assert client.get("/console/api/me", headers={"X-CSRF-Token": csrf}).status_code == 401
        httpx.patch(stack.admin + f"/admin/keys/{key_id}", json={"enabled": True}, headers=admin)
        assert (
            client.get("/console/api/me", headers={"X-CSRF-Token": csrf}).status_code == 401
        )  # ended, not suspended


# -- (c) an admin's browser on a hostile page ------------------------------------------------------


def test_csrf_bypasses_are_refused(stack: Stack) -> None:
    victim, _ = sign_in(stack.admin, stack.gateway.key)
    _, other_csrf = sign_in(stack.admin, stack.gateway.key)
    _, key_id = user_key(stack, name="must survive")
    host = f"127.0.0.1:{stack.gateway.admin_port}"
    attempts: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", "/admin/keys", {"X-CSRF-Token": other_csrf}, b'{"name": "forged"}'),
        ("POST", "/admin/keys", {"X-CSRF-Token": ""}, b'{"name": "forged"}'),
        ("POST", "/admin/keys", {"Origin": "null"}, b'{"name": "forged"}'),
        ("POST", "/admin/keys", {"Content-Type": "text/plain"}, b'{"name": "forged"}'),
        ("POST", "/admin/keys", {"Content-Type": "application/x-www-form-urlencoded"}, b"name=forged"),
        ("POST", "/admin/keys", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
        ("POST", "/admin/keys", {"Authorization": "Basic Zm9yZ2VkOg=="}, b'{"name": "forged"}'),
        ("POST", f"/admin/keys/{key_id}?_method=DELETE", {"X-HTTP-Method-Override": "DELETE"}, b""),
        ("DELETE", f"/admin/keys/{key_id}", {"Origin": f"http://{host}.evil.example"}, b""),
        ("GET", "/admin/models/pull?model=x", {}, b""),
        ("GET", "/console/api/chat", {}, b""),
        ("GET", f"/admin/keys/{key_id}?_method=DELETE", {"X-HTTP-Method-Override": "DELETE"}, b""),
    ]
    with contextlib.closing(victim):
        for method, path, headers, body in attempts:
            resp = victim.request(method, path, content=body, headers=headers)
            assert resp.status_code in (403, 405) or (method == "GET" and resp.status_code == 200), (
                path,
                headers,
            )
    names = [
        k["name"]
        for k in httpx.get(stack.admin + "/admin/keys", headers=stack.gateway.headers()).json()["data"]
    ]
    assert "forged" not in names and "must survive" in names


def test_no_cross_origin_reads_are_allowed(stack: Stack) -> None:
    client, _ = sign_in(stack.admin, stack.gateway.key)
    with contextlib.closing(client):
        for method, path in (
            ("OPTIONS", "/admin/keys"),
            ("OPTIONS", "/console/session"),
            ("GET", "/console/session"),
        ):
            resp = client.request(
                method,
                path,
                headers={
                    "Origin": EVIL,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "x-csrf-token",
                },
            )
            assert not any(h.lower().startswith("access-control-allow") for h in resp.headers), (method, path)


def test_every_answer_is_typed_unsniffed_and_uncached(stack: Stack) -> None:
    client, csrf = sign_in(stack.admin, stack.gateway.key)
    stream = {**CHAT, "stream": True}
    with contextlib.closing(client):
        answers = [
            client.get("/console/api/me", headers={"X-CSRF-Token": csrf}),
            client.get("/console/session", headers={"X-CSRF-Token": csrf}),
            client.get("/admin/keys", headers={"X-CSRF-Token": csrf}),
            client.post("/admin/playground/chat", json=stream, headers={"X-CSRF-Token": csrf}),
            client.get(f"/console/{XSS}", headers={"X-CSRF-Token": csrf}),
            client.get(f"/admin/{XSS}", headers={"X-CSRF-Token": csrf}),
            client.get("/console/api/usage?last=" + XSS, headers={"X-CSRF-Token": csrf}),
            httpx.get(stack.admin + "/admin/keys"),
            client.post("/console/api/chat", content=b"{", headers={"X-CSRF-Token": csrf}),
            client.put("/console/session"),
        ]
    for resp in answers:
        where = f"{resp.request.method} {resp.request.url.path}"
        assert not resp.headers.get("content-type", "").startswith("text/html"), where
        assert resp.headers["x-content-type-options"] == "nosniff", where
        assert resp.headers["cache-control"] == "no-store", where
    page = httpx.get(stack.admin + "/console")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    policy = page.headers["content-security-policy"]
    assert (
        "unsafe" not in policy and "script-src 'self'" in policy and "data:" not in policy.split("img-src")[0]
    )


def test_a_page_on_another_port_cannot_act_through_the_browser(browser: Any, stack: Stack) -> None:
    site = AttackerSite()
    target = stack.admin + "/admin/keys"
    site.pages["/"] = (
        f'<iframe id="framed" name="framed" src="{stack.admin}/console"></iframe>'
        f'<form id="f" method="POST" enctype="text/plain" action="{target}" target="framed2">'
        '<input type="hidden" name=\'{"name": "forged-form", "x": "\' value=\'"}\'></form>'
        '<iframe name="framed2"></iframe>'
    )
    console = admin_console(browser, stack.gateway)
    try:
        with ServerThread(site.app) as other:  # same site as the console (127.0.0.1), another origin
            page = console.page
            page.goto(f"http://127.0.0.1:{other.port}/")  # "load" waits for the frames too
            assert page.frame(name="framed").url.startswith("chrome-error:")  # frame-ancestors 'none'
            for script in (
                "(url) => fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include', "
                "body: JSON.stringify({name: 'forged-fetch'})})",
                "() => document.getElementById('f').submit()",
            ):
                with page.expect_response(target) as answer:
                    page.evaluate(script, target) if "url" in script else page.evaluate(script)
                assert answer.value.status == 403  # the cookie went along; the origin check refused it
    finally:
        console.close()
    names = [k["name"] for k in httpx.get(target, headers=stack.gateway.headers()).json()["data"]]
    assert "forged-form" not in names and "forged-fetch" not in names


# -- (d) an upstream that controls its answers, and what pages and logs show -----------------------


def test_markup_from_upstreams_and_users_stays_text(browser: Any, tmp_path: Path) -> None:
    evil = OllamaEmulator(
        [ModelSpec(XSS, family=XSS, parameter_size=XSS, quantization=XSS, capabilities=["completion", XSS])],
        version=XSS,
    )
    evil.loaded = {f"{XSS}:latest": 8192}
    evil.fault = Fault("status", status=400, message=XSS, paths=("/api/chat", "/api/pull"))
    broken = OllamaEmulator()
    broken.fault = Fault("status", status=500, message=XSS, paths=("/api/version", "/api/tags"))
    with ServerThread(evil.app) as e, ServerThread(broken.app) as b:
        config = make_config(
            {
                "providers": [
                    {"name": "evil", "type": "ollama", "base_url": e.url},
                    {"name": "broken", "type": "ollama", "base_url": b.url},
                ]
            }
        )
        with GatewayServer(config, home=tmp_path) as gw:
            admin = gw.headers()
            assert (
                httpx.post(
                    gw.admin_url + "/admin/aliases",
                    headers=admin,
                    json={"name": XSS, "target": f"evil/{XSS}"},
                ).status_code
                == 201
            )
            assert (
                httpx.post(
                    gw.admin_url + "/admin/keys",
                    headers=admin,
                    json={"name": XSS, "owner": XSS, "metadata": {XSS: XSS}},
                ).status_code
                == 201
            )
            console = Console(browser, gw.admin_url)
            console.page.set_default_timeout(15_000)
            console.context.add_init_script(CSP_WATCH)
            console.sign_in(gw.key)
            shown = []
            try:
                for name in ("overview", "instances", "models", "routing", "keys", "audit", "usage"):
                    page = console.open(name)
                    page.wait_for_load_state("networkidle")
                    shown.append(XSS in page.locator("main").inner_text())
                page = console.open("instances")
                page.get_by_role("row").filter(has_text="broken").get_by_role("button", name="Test").click()
                page.get_by_text("test failed: ").first.wait_for()
                page = console.open("models")
                page.get_by_label("Model to pull").fill(XSS)
                page.get_by_role("button", name="Pull").click()
                page.locator(".pull-progress .error-text").wait_for()
                page = console.open("playground")
                page.get_by_label("Model", exact=True).select_option(XSS)
                page.get_by_label("Message").fill(XSS)
                page.get_by_role("button", name="Send").click()
                page.locator(".answer-text .error-text").last.wait_for()
                assert XSS in page.locator(".answer-text").last.inner_text()
                assert page.locator("img[src='x']").count() == 0
                assert console.page.evaluate("() => window.__violations || []") == []
                assert console.dialogs == []
            finally:
                console.close()
    assert shown.count(True) >= 5, shown  # the probes reached the pages, as text


def test_the_upstream_never_sees_the_browsers_cookie_or_token(stack: Stack) -> None:
    client, csrf = sign_in(stack.admin, stack.gateway.key)
    token = client.cookies.get("corral_session")
    assert token
    seen = sum(len(e.requests) for e in (stack.gpu_a, stack.gpu_b, stack.openai))
    with contextlib.closing(client):
        resp = client.post("/admin/playground/chat", json=CHAT, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200
    upstream = [r for e in (stack.gpu_a, stack.gpu_b, stack.openai) for r in e.requests]
    assert len(upstream) > seen
    for r in upstream:
        assert "cookie" not in r.headers and "x-csrf-token" not in r.headers
        assert token not in str(r.headers) and csrf not in str(r.headers)


def test_no_secret_reaches_a_page_an_error_a_log_or_the_openapi_document(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = stack.gateway.headers()
    secret, header_secret = "sk-attack-SECRET-0123456789abcdefghij", "hdr-SECRET-0123456789"
    made = httpx.post(
        stack.admin + "/admin/providers",
        headers=admin,
        json={
            "name": "leaky",
            "type": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": secret,
            "headers": {"X-Secret": header_secret},
        },
    )
    assert made.status_code == 201
    try:
        texts = [made.text]
        texts += [
            httpx.post(stack.admin + f"/admin/providers/leaky/{what}", headers=admin).text
            for what in ("test", "check")
        ]
        for path in (
            "/admin/providers",
            "/admin/providers/leaky",
            "/admin/audit",
            "/admin/openapi.json",
            "/admin/health",
            "/admin/models",
            "/console",
            "/console/api/me",
            "/metrics",
        ):
            texts.append(httpx.get(stack.admin + path, headers=admin).text)
        for near in (stack.gateway.key + "x", stack.gateway.key[:-1]):  # near misses of the master key
            texts.append(httpx.post(stack.admin + "/console/session", json={"key": near}).text)
            texts.append(
                httpx.get(stack.admin + "/admin/keys", headers={"Authorization": f"Bearer {near}"}).text
            )
        texts.append(caplog.text)
        for text in texts:
            for value in (secret, header_secret, stack.gateway.key, "sk-openai-emulator-secret"):
                assert value not in text
    finally:
        httpx.delete(stack.admin + "/admin/providers/leaky", headers=admin)
