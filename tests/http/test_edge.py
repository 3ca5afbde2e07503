"""The HTTP edge: authentication, error envelopes and honest statuses, size limits."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.gateway import MASTER_KEY, GatewayServer, make_config

CHAT = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    config = make_config({"server": {"max_request_bytes": 4096}}, demo=True)
    with GatewayServer(config) as server:
        yield server


def error_of(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_bearer_and_x_api_key_both_authenticate(gw: GatewayServer) -> None:
    assert httpx.post(gw.v1 + "/chat/completions", json=CHAT, headers=gw.headers()).status_code == 200
    assert (
        httpx.post(gw.v1 + "/chat/completions", json=CHAT, headers={"X-API-Key": MASTER_KEY}).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"Authorization": "Basic " + MASTER_KEY}, "missing_api_key"),
        ({"X-API-Key": "x" * 4000}, "invalid_api_key"),
        ({"Authorization": "Bearer " + MASTER_KEY + "x"}, "invalid_api_key"),
        ({"Authorization": "Bearer ' OR 1=1 --"}, "invalid_api_key"),
    ],
)
def test_missing_or_wrong_key_is_401_and_never_echoed(
    gw: GatewayServer, headers: dict[str, str], code: str
) -> None:
    resp = httpx.post(gw.v1 + "/chat/completions", json=CHAT, headers=headers)
    assert resp.status_code == 401
    err = error_of(resp)
    assert err["type"] == "authentication_error" and err["code"] == code
    assert MASTER_KEY not in resp.text and "OR 1=1" not in resp.text
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_v1_route_requires_the_key(gw: GatewayServer) -> None:
    for method, path in [
        ("POST", "/chat/completions"),
        ("POST", "/completions"),
        ("POST", "/embeddings"),
        ("GET", "/models"),
        ("GET", "/models/demo/echo"),
    ]:
        assert httpx.request(method, gw.v1 + path, json=CHAT).status_code == 401, path


def test_openai_client_sees_auth_error(gw: GatewayServer) -> None:
    client = openai.OpenAI(base_url=gw.v1, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo/echo", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1,2]", None, "invalid_json"),
        (b'{"messages": []}', "model", "missing_model"),
        (b'{"model": "demo/echo"}', "messages", None),
        (b'{"model": "demo/echo", "messages": "hi"}', "messages", None),
        (b'{"model": "demo/echo", "messages": [{"content": "x"}]}', "messages[0]", None),
        (
            b'{"model": "demo/echo", "messages": [{"role":"user","content":"x"}], "stream": "yes"}',
            "stream",
            None,
        ),
    ],
)
def test_bad_json_or_params_is_400(
    gw: GatewayServer, body: bytes, param: str | None, code: str | None
) -> None:
    resp = httpx.post(gw.v1 + "/chat/completions", content=body, headers=gw.headers())
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["code"] == code


def test_unknown_model_is_404_with_close_matches(gw: GatewayServer) -> None:
    resp = httpx.post(gw.v1 + "/chat/completions", json={**CHAT, "model": "demo/ech0"}, headers=gw.headers())
    assert resp.status_code == 404
    resp = httpx.post(gw.v1 + "/chat/completions", json={**CHAT, "model": "dem/echo"}, headers=gw.headers())
    assert resp.status_code == 404
    err = error_of(resp)
    assert err["code"] == "model_not_found" and "demo/echo" in str(err["message"])
    client = openai.OpenAI(base_url=gw.v1, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nothing-like-it")


def test_body_over_the_limit_is_413_before_parsing(gw: GatewayServer) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    resp = httpx.post(gw.v1 + "/chat/completions", json=big, headers=gw.headers())
    assert resp.status_code == 413
    assert error_of(resp)["code"] == "body_too_large"

    def chunked() -> Iterator[bytes]:
        yield b'{"model": "demo/echo", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    resp = httpx.post(gw.v1 + "/chat/completions", content=chunked(), headers=gw.headers())
    assert resp.status_code == 413


def test_unknown_route_gets_an_envelope(gw: GatewayServer) -> None:
    resp = httpx.post(gw.url + "/v2/chat", json=CHAT, headers=gw.headers())
    assert resp.status_code == 404 and "/v1" in str(error_of(resp)["message"])
    resp = httpx.get(gw.v1 + "/chat/completions", headers=gw.headers())
    assert resp.status_code == 405


def test_request_id_is_returned_and_client_ids_are_sanitised(gw: GatewayServer) -> None:
    resp = httpx.post(
        gw.v1 + "/chat/completions", json=CHAT, headers={**gw.headers(), "x-request-id": "abc-123"}
    )
    assert resp.headers["x-request-id"] == "abc-123"
    assert resp.headers["x-corral-request-id"].startswith("req_")
    resp = httpx.post(
        gw.v1 + "/chat/completions", json=CHAT, headers={**gw.headers(), "x-request-id": "a\tb<script>"}
    )
    assert resp.headers["x-request-id"].startswith("req_")
    assert resp.headers["x-request-id"] == resp.headers["x-corral-request-id"]
    error = httpx.post(gw.v1 + "/chat/completions", json={}, headers={**gw.headers(), "x-request-id": "e-1"})
    assert error.status_code == 400 and error.headers["x-request-id"] == "e-1"
    assert error.headers["x-corral-request-id"].startswith("req_")


def test_health_endpoints_need_no_key(gw: GatewayServer) -> None:
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_huge_headers_are_refused_without_a_5xx(gw: GatewayServer) -> None:
    resp = httpx.post(
        gw.v1 + "/chat/completions", json=CHAT, headers={"Authorization": "Bearer " + "k" * 100_000}
    )
    assert 400 <= resp.status_code < 500
