"""Hostile-input audit of the data plane, request side: what a request head, its trailers and
its protocol version may and may not do (faults 3, 4, 5, 11, 13, 14, 15 of the audit).

Each test drives a real gateway over raw sockets. A test marked ``audit_fault`` was a strict
xfail that failed, for the reason it names, before its fault was fixed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import orjson
import pytest

from tests.emulators.common import Fault
from tests.hardening.rawclient import (
    Fleet,
    RawConnection,
    Reset,
    audit_fault,
    bearer,
    chunked,
    request,
    start_fleet,
    wait_read,
    wait_until,
)

CHAT = "/v1/chat/completions"
MAX_HEAD = 64 * 1024  # the head limit the audit names (corral.edge: 64 KiB, 128 fields)
ANSWER_NOW = 2.0  # seconds: an answer the server can give from the head alone


def chat_body(model: str | None = "demo/echo", text: str = "hi", **extra: object) -> bytes:
    body: dict[str, object] = {"messages": [{"role": "user", "content": text}], **extra}
    if model is not None:
        body["model"] = model
    return orjson.dumps(body)


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Module-scoped here: one gateway per loop for the whole module."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def fleet(loop_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A gateway with the control plane (a SQLite store in a temporary home), the demo provider
    and an emulated upstream; ``corral/eco`` routes to ``demo/echo``."""
    started = start_fleet(
        loop_kind,
        router={"queue_timeout": "0.5s", "power_levels": {"eco": ["demo/echo"]}},
        home=tmp_path_factory.mktemp("home"),
    )
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def _reset_upstream(fleet: Fleet) -> Iterator[None]:
    yield
    fleet.emulator.fault = None
    fleet.emulator.model_faults.clear()
    fleet.emulator.token_delay = 0.0


def connect(fleet: Fleet, timeout: float = 5.0) -> RawConnection:
    return RawConnection(fleet.port, timeout=timeout)


def admin_port(fleet: Fleet) -> int:
    """The control plane's port (the data port until the listeners are split)."""
    return int(fleet.admin_url.rsplit(":", 1)[1])


def chunked_head(path: str = CHAT, headers: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n{headers}\r\n".encode()


# -- fault 3: chunked trailers count against the head limits ------------------------------------


@audit_fault(3, "chunked trailers are read without a bound")
def test_endless_trailer_is_refused_within_the_head_limit(fleet: Fleet) -> None:
    body = chat_body()
    with connect(fleet, timeout=ANSWER_NOW) as c:
        c.send(chunked_head(headers=bearer(fleet.key)) + b"%x\r\n%b\r\n0\r\nX-Pad: " % (len(body), body))
        sent, stopped = c.send_until_refused(b"a" * 8192, 200 * 1024, fleet.port)
        assert stopped, f"the server took {sent} bytes of one trailer field without answering or closing"
        assert sent <= MAX_HEAD + 2 * 8192, f"refused only after {sent} bytes of trailer"
        try:
            response = c.response()
        except Reset:
            return  # reset before the 431 could be read: refused all the same
        assert response.status == 431
        assert c.closed()


# -- fault 4: trailers are not request headers ---------------------------------------------------


@pytest.mark.parametrize(
    "field", ["Authorization: Bearer {key}", "X-API-Key: {key}"], ids=["bearer", "x-api-key"]
)
@audit_fault(4, "trailer fields are merged into the headers")
def test_a_key_in_a_trailer_does_not_authenticate(fleet: Fleet, field: str) -> None:
    trailer = field.format(key=fleet.key) + "\r\n"
    with connect(fleet) as c:
        c.send(chunked_head() + chunked([chat_body()], trailer))
        assert c.response().status == 401


@audit_fault(4, "trailer fields are merged into the headers")
def test_a_request_id_in_a_trailer_is_not_echoed(fleet: Fleet) -> None:
    with connect(fleet) as c:
        c.send(
            chunked_head(headers=bearer(fleet.key)) + chunked([chat_body()], "X-Request-Id: trailer-id\r\n")
        )
        response = c.response()
    assert response.status == 200
    assert "trailer-id" not in (response.header("x-request-id") or "")
    assert "trailer-id" not in (response.header("x-corral-request-id") or "")


@audit_fault(4, "trailer fields are merged into the headers")
def test_power_in_a_trailer_does_not_choose_the_model(fleet: Fleet) -> None:
    with connect(fleet) as c:
        # the same request with x-corral-power in its head would route to corral/eco
        c.send(
            chunked_head(headers=bearer(fleet.key)) + chunked([chat_body(None)], "x-corral-power: eco\r\n")
        )
        response = c.response()
    assert response.status == 400, response.body
    assert response.json()["error"]["code"] == "missing_model"


def test_power_in_the_head_chooses_the_model(fleet: Fleet) -> None:
    """The control for the trailer test above: in the head, x-corral-power does route."""
    with connect(fleet) as c:
        response = c.request(
            request("POST", CHAT, chat_body(None), headers=bearer(fleet.key) + "x-corral-power: eco\r\n")
        )
    assert response.status == 200
    assert response.json()["model"] == "corral/eco"


# -- fault 5: the key is checked from the head, before any body byte --------------------------


@pytest.mark.parametrize("path", [CHAT, "/v1/embeddings", "/api/chat"])
@audit_fault(5, "100 Continue is sent before the key is checked")
def test_keyless_expect_continue_gets_401_not_100(fleet: Fleet, path: str) -> None:
    with connect(fleet, timeout=ANSWER_NOW) as c:
        c.send(request("POST", path, headers="Content-Length: 1000\r\nExpect: 100-continue\r\n"))
        response = c.response()
        assert response.status == 401, f"{response.status} before the key was checked"
        assert c.closed()


def test_expect_continue_with_a_valid_key_still_gets_100(fleet: Fleet) -> None:
    body = chat_body()
    head = f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n" + bearer(fleet.key)
    with connect(fleet) as c:
        c.send(request("POST", CHAT, headers=head))
        assert c.response().status == 100
        assert c.request(body).status == 200


@pytest.mark.parametrize(
    "credentials",
    ["", bearer("sk-wrong-0123456789abcdef"), "X-API-Key: sk-wrong-0123456789abcdef\r\n"],
    ids=["no-key", "wrong-bearer", "wrong-x-api-key"],
)
@audit_fault(5, "a body is read before the key is checked", TimeoutError)
def test_a_large_body_without_a_valid_key_is_refused_from_the_head(fleet: Fleet, credentials: str) -> None:
    with connect(fleet, timeout=ANSWER_NOW) as c:
        c.send(request("POST", CHAT, headers="Content-Length: 30000000\r\n" + credentials))  # no body sent
        response = c.response()
        assert response.status == 401
        assert c.closed()


# -- fault 11: nothing is answered after an answer that closes the connection ------------------


@pytest.mark.parametrize("same_write", [True, False], ids=["same-write", "later-write"])
def test_nothing_is_answered_after_a_connection_close_request(fleet: Fleet, same_write: bool) -> None:
    fleet.emulator.fault = Fault("hang_before_headers", seconds=0.5, times=1)
    closing = request(
        "POST", CHAT, chat_body("up/gpt-4o-mini"), headers=bearer(fleet.key) + "Connection: close\r\n"
    )
    cold = request("GET", "/v1/models", headers=bearer(fleet.key))
    with connect(fleet) as c:
        if same_write:
            c.send(closing + cold)
        else:
            c.send(closing)
            wait_read(fleet.port, c.local_port)
            c.send(cold)
        response = c.response()
        assert response.status == 200 and response.header("connection") == "close"
        assert c.rest() == b""


@pytest.fixture
def lone_fleet(loop_kind: str) -> Iterator[Fleet]:
    """A gateway of its own, for a test that shuts it down."""
    started = start_fleet(loop_kind)
    yield started
    started.stop()


@audit_fault(11, "a cold request queued behind an answer that closes is still answered")
def test_a_request_queued_behind_an_answer_that_closes_is_not_answered(lone_fleet: Fleet) -> None:
    fleet = lone_fleet
    fleet.emulator.fault = Fault("hang_before_headers", seconds=1.0, times=1)
    with connect(fleet) as c:
        c.send(request("POST", CHAT, chat_body("up/gpt-4o-mini"), headers=bearer(fleet.key)))
        wait_until(
            lambda: len(fleet.emulator.requests_to("/chat/completions")) == 1, what="the upstream call"
        )
        c.send(request("GET", "/v1/models", headers=bearer(fleet.key)))
        wait_read(fleet.port, c.local_port)
        stopping = threading.Thread(target=fleet.gateway.stop)  # its answer in progress now closes
        stopping.start()
        try:
            response = c.response()
            assert response.status == 200 and response.header("connection") == "close"
            rest = c.rest()
        finally:
            stopping.join(30)
    assert rest == b"", f"answered after Connection: close: {rest[:80]!r}"


# -- fault 13: HTTP versions and Host --------------------------------------------------------


@audit_fault(13, "streams are chunked to HTTP/1.0")
def test_a_stream_to_an_http10_client_is_close_delimited(fleet: Fleet) -> None:
    body = chat_body(text="one two three", stream=True)
    with connect(fleet) as c:
        response = c.request(request("POST", CHAT, body, headers=bearer(fleet.key), version="1.0"))
    assert response.status == 200
    assert response.header("transfer-encoding") is None
    assert response.close_delimited and response.body.endswith(b"data: [DONE]\n\n")


@audit_fault(13, "HTTP/1.0 keep-alive is kept without saying so")
def test_http10_keep_alive_is_either_confirmed_or_closed(fleet: Fleet) -> None:
    with connect(fleet, timeout=ANSWER_NOW) as c:
        head = bearer(fleet.key) + "Connection: keep-alive\r\n"
        response = c.request(request("POST", CHAT, chat_body(), headers=head, version="1.0"))
        assert response.status == 200
        if (response.header("connection") or "").lower() != "keep-alive":
            try:
                assert c.closed(), "bytes after the answer"
            except TimeoutError:
                raise AssertionError("kept open, but the answer did not say Connection: keep-alive") from None


TWO_HOSTS = "Host: a\r\nHost: b\r\n"
HOST_CASES = [
    pytest.param("POST", None, id="post-missing", marks=audit_fault(13, "a request without Host is served")),
    pytest.param("POST", TWO_HOSTS, id="post-twice", marks=audit_fault(13, "two Hosts are served")),
    pytest.param("GET", None, id="get-missing"),
    pytest.param("GET", TWO_HOSTS, id="get-twice"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "hosts"), HOST_CASES)
def test_http11_needs_exactly_one_host(fleet: Fleet, method: str, hosts: str | None) -> None:
    path, body = (CHAT, chat_body()) if method == "POST" else ("/v1/models", None)
    with connect(fleet) as c:
        response = c.request(
            request(method, path, body, headers=(hosts or "") + bearer(fleet.key), host=None)
        )
    assert response.status == 400


@pytest.mark.parametrize("method", ["POST", "GET"])
@audit_fault(13, "HTTP/2.0 is served as HTTP/1")
def test_http2_on_the_http1_parser_is_refused(fleet: Fleet, method: str) -> None:
    path, body = (CHAT, chat_body()) if method == "POST" else ("/v1/models", None)
    with connect(fleet) as c:
        response = c.request(request(method, path, body, headers=bearer(fleet.key), version="2.0"))
        assert response.status in (400, 505), response.status
        assert c.closed()


# -- fault 14: two Authorization headers ------------------------------------------------------


@audit_fault(14, "two Authorization headers get 401, not 400")
def test_two_authorization_headers_are_refused_on_the_data_plane(fleet: Fleet) -> None:
    with connect(fleet) as c:
        response = c.request(request("POST", CHAT, chat_body(), headers=bearer(fleet.key) * 2))
    assert response.status == 400


@audit_fault(14, "aiohttp takes the first of two Authorization headers")
def test_two_authorization_headers_are_refused_on_the_control_plane(fleet: Fleet) -> None:
    with RawConnection(admin_port(fleet)) as c:
        response = c.request(request("GET", "/admin/keys", headers=bearer(fleet.key) * 2))
    assert response.status == 400


# -- fault 15: noise -------------------------------------------------------------------------


@pytest.mark.parametrize("plane", ["data", "control"])
@audit_fault(15, "GET * logs an aiohttp ERROR traceback")
def test_asterisk_target_is_refused_without_a_logged_traceback(
    fleet: Fleet, plane: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = fleet.port if plane == "data" else admin_port(fleet)
    with caplog.at_level(logging.INFO), RawConnection(port) as c:
        response = c.request(b"GET * HTTP/1.1\r\nHost: test\r\n\r\n")
    assert response.status in (400, 404)
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [f"{r.name}: {r.getMessage()}" for r in noisy]


def data_plane_requests(key: str) -> list[bytes]:
    return [
        request("POST", CHAT, chat_body(), headers=bearer(key)),
        request("POST", CHAT, chat_body(), headers=""),  # 401
        request("GET", "/v1/models", headers=bearer(key)),
        request("GET", "/api/tags", headers=bearer(key)),
        request("GET", "/healthz"),
        request("GET", "/readyz"),
        request("GET", "/no/such/path", headers=bearer(key)),
    ]


def control_plane_requests(key: str) -> list[bytes]:
    return [
        request("GET", "/admin/health", headers=bearer(key)),
        request("GET", "/admin/keys", headers=bearer(key)),
        request("GET", "/admin/keys"),  # 401
        request("GET", "/metrics", headers=bearer(key)),
        request("GET", "/admin/no-such-route", headers=bearer(key)),
    ]


@pytest.mark.parametrize("plane", ["data", "control"])
@audit_fault(15, "aiohttp's Server header names its versions")
def test_no_answer_names_server_versions(fleet: Fleet, plane: str) -> None:
    port, requests = (
        (fleet.port, data_plane_requests(fleet.key))
        if plane == "data"
        else (admin_port(fleet), control_plane_requests(fleet.key))
    )
    seen: list[tuple[bytes, str]] = []
    for data in requests:
        with RawConnection(port) as c:
            response = c.request(data)
        seen.extend((data.split(b"\r\n", 1)[0], value) for value in response.all("server"))
    assert all(value == "corral" for _, value in seen), seen
