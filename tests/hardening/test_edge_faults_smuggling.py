"""Hostile-input audit of the data plane: the request-smuggling and path cases it found handled
correctly, kept that way. Every malformed framing is refused with 400 and the connection
closed, nothing of it reaches the upstream, and no path trick on the data port reaches the
admin API."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest

from tests.hardening.rawclient import Fleet, RawConnection, bearer, chunked, request, start_fleet, wait_until

CHAT = "/v1/chat/completions"
BODY = orjson.dumps({"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
SMUGGLED = f"POST {CHAT} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Module-scoped here: one gateway per loop for the whole module."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def fleet(loop_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    started = start_fleet(loop_kind, home=tmp_path_factory.mktemp("home"))
    yield started
    started.stop()


def upstream_calls(fleet: Fleet) -> int:
    return len(fleet.emulator.requests_to("/chat/completions"))


def post(key: str, framing: bytes, body: bytes) -> bytes:
    """A chat POST whose framing headers (each line ending in CRLF) and body are given as is."""
    return f"POST {CHAT} HTTP/1.1\r\nHost: test\r\n{bearer(key)}".encode() + framing + b"\r\n" + body


CL = b"Content-Length: %d\r\n" % len(BODY)
TE = b"Transfer-Encoding: chunked\r\n"

MALFORMED: dict[str, Callable[[str], bytes]] = {
    "two-content-lengths": lambda k: post(k, CL + CL, BODY),
    "two-different-content-lengths": lambda k: post(k, CL + b"Content-Length: 5\r\n", BODY),
    "content-length-and-chunked": lambda k: post(k, b"Content-Length: 5\r\n" + TE, chunked([BODY])),
    "content-length-and-chunked-smuggling": lambda k: post(k, CL + TE, b"0\r\n\r\n" + SMUGGLED),
    "te-xchunked": lambda k: post(k, b"Transfer-Encoding: xchunked\r\n", chunked([BODY])),
    "te-chunked-then-identity": lambda k: post(
        k, b"Transfer-Encoding: chunked, identity\r\n", chunked([BODY])
    ),
    "te-twice": lambda k: post(k, TE + TE, chunked([BODY])),
    "te-space-before-colon": lambda k: post(k, b"Transfer-Encoding : chunked\r\n", chunked([BODY])),
    "te-vertical-tab": lambda k: post(k, b"Transfer-Encoding: chunked\x0b\r\n", chunked([BODY])),
    "chunk-size-negative": lambda k: post(k, TE, b"-1\r\n" + BODY + b"\r\n0\r\n\r\n"),
    "chunk-size-0x": lambda k: post(k, TE, b"0x%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"),
    "chunk-size-overflow": lambda k: post(k, TE, b"f" * 21 + b"\r\n" + BODY + b"\r\n0\r\n\r\n"),
    "chunk-size-not-hex": lambda k: post(k, TE, b"g\r\n" + BODY + b"\r\n0\r\n\r\n"),
    "chunk-size-bare-lf": lambda k: post(k, TE, b"%x\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"),
    "chunk-data-overruns-its-size": lambda k: post(k, TE, b"%x\r\n" % len(BODY) + BODY + b"XX0\r\n\r\n"),
    "bare-lf-line-ends": lambda k: post(k, CL, BODY).replace(b"\r\n", b"\n"),
    "bare-lf-in-a-header": lambda k: post(k, b"X-A: b\nX-B: c\r\n" + CL, BODY),
    "bare-cr-in-a-header": lambda k: post(k, b"X-A: b\rX-B: c\r\n" + CL, BODY),
    "obs-fold": lambda k: post(k, b"X-A: b\r\n c\r\n" + CL, BODY),
    "obs-fold-content-length": lambda k: post(k, b"Content-Length:\r\n %d\r\n" % len(BODY), BODY),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_framing_is_refused_and_closed(fleet: Fleet, case: str) -> None:
    before = upstream_calls(fleet)
    with RawConnection(fleet.port) as c:
        response = c.request(MALFORMED[case](fleet.key))
        # 501 for a transfer coding corral does not implement (RFC 9112 §6.1), else 400
        assert response.status in ((400, 501) if case.startswith("te-") else (400,)), response.body
        assert c.rest() == b""  # closed, and nothing after the refusal was read as a request
    assert upstream_calls(fleet) == before


def test_pipelined_hot_post_and_cold_get_in_one_write_call_upstream_once(fleet: Fleet) -> None:
    before = upstream_calls(fleet)
    key = bearer(fleet.key)
    with RawConnection(fleet.port) as c:
        c.send(request("POST", CHAT, BODY, headers=key) + request("GET", "/v1/models", headers=key))
        first = c.response()
        assert first.status == 200 and first.json()["object"] == "chat.completion"
        second = c.response()  # the GET's answer (served, or refused as pipelined): never the POST again
        assert b"chat.completion" not in second.body
    wait_until(lambda: upstream_calls(fleet) >= before + 1, what="the upstream call")
    assert upstream_calls(fleet) == before + 1


ADMIN_TRICKS = [
    "/v1/../admin/keys",
    "//admin/keys",
    "/admin%2fkeys",
    "/%61dmin/keys",  # reached the admin API before the listeners were split (aiohttp decodes it)
]


@pytest.mark.parametrize("path", ADMIN_TRICKS)
def test_path_tricks_on_the_data_port_never_reach_the_admin_api(fleet: Fleet, path: str) -> None:
    with RawConnection(fleet.port) as c:
        response = c.request(request("GET", path, headers=bearer(fleet.key)))
    assert response.status in (400, 404), (response.status, response.body[:200])
    assert b'"object":"list"' not in response.body
