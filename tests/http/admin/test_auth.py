"""Every admin route needs admin scope; the OpenAPI document matches the route table; hostile
keys of every shape are a clean 401 (never a 5xx)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from corral.http.limits import MAX_HEAD
from corral.keys import format as key_format
from tests.http.admin.conftest import unthrottled
from tests.support.gateway import GatewayServer, make_config

CHAT = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}
FIELD_LIMIT = MAX_HEAD  # the control plane's max_field_size, the same limit as the edge's
FIELD_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]  # RFC 9110 field-value bytes


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    home: Path = tmp_path_factory.mktemp("home")
    with GatewayServer(make_config({}, demo=True), home=home) as server:
        yield unthrottled(server)


@pytest.fixture(scope="module")
def user_key(gw: GatewayServer) -> str:
    resp = httpx.post(gw.admin_url + "/admin/keys", json={"name": "user"}, headers=gw.headers())
    assert resp.status_code == 201
    return str(resp.json()["key"])


def admin_routes(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/admin"):
            out.append((route.method, path))
    return out


def test_every_admin_route_needs_an_admin_key(gw: GatewayServer, user_key: str) -> None:
    assert gw.app is not None
    routes = admin_routes(gw.app.control)
    assert len(routes) >= 20 and ("DELETE", "/admin/keys/{id}") in routes
    with httpx.Client(base_url=gw.admin_url, timeout=10) as client:
        for method, template in routes:
            path = template.format(name="x", id="AAAAAAAA", provider="x", model="x")
            for headers, status, code in [
                ({}, 401, "missing_api_key"),
                ({"Authorization": "Bearer wrong"}, 401, "invalid_api_key"),
                ({"Authorization": f"Bearer {user_key}"}, 403, "admin_required"),
                ({"X-API-Key": user_key}, 403, "admin_required"),
            ]:
                resp = client.request(method, path, headers=headers, json={"name": "x"})
                assert resp.status_code == status, (method, path, headers)
                if method != "HEAD":
                    assert resp.json()["error"]["code"] == code
    with httpx.Client(base_url=gw.admin_url, timeout=10, headers=gw.headers()) as client:
        assert client.get("/admin/keys").status_code == 200  # the master key does get in


def test_openapi_lists_exactly_the_routes_the_app_has(gw: GatewayServer) -> None:
    assert gw.app is not None
    doc = httpx.get(gw.admin_url + "/admin/openapi.json", headers=gw.headers()).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(m, p) for m, p in admin_routes(gw.app.control) if m != "HEAD"}  # HEAD comes with a GET
    assert documented == served
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def raw_status(port: int, request_line: bytes, header: bytes) -> int:
    """Send a request no HTTP client library would send; return the answer's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n" + header + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def hostile_keys(rng: random.Random) -> list[bytes]:
    """1,000 header values: random bytes, SQL fragments, gw_ look-alikes, huge and unicode."""
    real_id, real = key_format.generate()
    sql = ["' OR '1'='1", "' OR 1=1 --", '"; DROP TABLE gateway_keys; --', "gw_' UNION SELECT key_hash --"]
    out: list[bytes] = [s.encode() for s in sql]
    for i in range(996):
        kind = i % 6
        if kind == 0:  # random latin-1 text, of the bytes HTTP allows in a header value
            raw = bytes(rng.choice(FIELD_BYTES) for _ in range(40))
            out.append(raw.strip() or b"x")
        elif kind == 1:  # well-formed shape, wrong checksum
            out.append((real[:-6] + "".join(rng.choices(key_format.ALPHABET, k=6))).encode())
        elif kind == 2:  # right checksum, unknown secret (or id)
            out.append(key_format.generate(real_id if i % 2 else None)[1].encode())
        elif kind == 3:
            out.append(("gw_" + "A" * rng.randint(0, 12_000)).encode())
        elif kind == 4:
            out.append("".join(chr(rng.randint(0xA0, 0x2FFF)) for _ in range(30)).encode("utf-8"))
        else:
            out.append((sql[i % len(sql)] + real[: rng.randint(0, len(real))]).encode())
    return out


def test_1000_hostile_keys_are_all_401_and_never_a_server_error(gw: GatewayServer) -> None:
    keys = hostile_keys(random.Random(1234))
    assert len(keys) == 1000
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=10) as client:
        for i, key in enumerate(keys):
            header = {
                0: ("Authorization", b"Bearer " + key),
                1: ("X-API-Key", key),
                2: ("Authorization", key),
            }
            name, value = header[i % 3]
            for method, path in (
                ("POST", gw.url + "/v1/chat/completions"),
                ("GET", gw.admin_url + "/admin/providers"),
            ):
                resp = client.request(method, path, headers={name.encode(): value}, json=CHAT)
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                assert resp.status_code == 401, (key[:80], resp.status_code, resp.text[:200])
                assert key[:40] not in resp.content or len(key) < 8
        # control characters are not HTTP: the parser refuses them before any handler runs
        rng = random.Random(99)
        for _ in range(20):
            bad = bytes(rng.choice(FIELD_BYTES) for _ in range(10)) + bytes([rng.choice([1, 8, 11, 27, 127])])
            assert raw_status(gw.admin_port, b"GET /admin/providers HTTP/1.1", b"X-API-Key: k" + bad) == 400
        # at the server's header limit: still a 401; above it, the parser refuses (400/431)
        for size, allowed in ((FIELD_LIMIT - 200, {401}), (FIELD_LIMIT + 1, {400, 431})):
            with httpx.Client(base_url=gw.admin_url, timeout=10) as fresh:
                resp = fresh.get("/admin/providers", headers={"X-API-Key": "k" * size})
                assert resp.status_code in allowed, (size, resp.status_code)
    assert statuses == {401: 2000}
