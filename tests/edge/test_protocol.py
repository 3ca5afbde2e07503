"""EdgeProtocol over real sockets: keep-alive, hand-over to aiohttp, pipelining, limits, errors,
streams. Each test writes exact bytes and reads the exact answers."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from corral.errors import InvalidRequest
from corral.http.exchange import Exchange
from corral.http.routes import Route
from tests.edge.harness import Edge, chunked_post, eventually, get, post


def assert_envelope(body: bytes, error_type: str, code: str | None) -> dict[str, object]:
    parsed = orjson.loads(body)
    assert set(parsed) == {"error"}
    error = parsed["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type and error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


# -- keep-alive -------------------------------------------------------------------------------


async def test_several_hot_requests_on_one_connection(edge: Edge) -> None:
    client = await edge.connect()
    first = await client.request(
        post("/echo", b'{"n":1}', headers="X-Request-Id: mine-1\r\nX-Mixed-Case: A\r\n")
    )
    assert first.status == 200
    assert first.headers["content-type"] == "application/json"
    assert "connection" not in first.headers
    assert first.headers["date"].endswith(" GMT")
    assert first.headers["x-request-id"] == "mine-1"
    assert first.headers["x-corral-request-id"].startswith("req_")
    seen = first.json()
    assert seen["path"] == "/echo" and seen["body"] == '{"n":1}'
    assert seen["headers"]["x-mixed-case"] == "A" and seen["headers"]["host"] == "test"
    assert all(name == name.lower() for name in seen["headers"])

    second = await client.request(chunked_post("/echo", [b'{"n":', b"2}"]))
    assert second.status == 200 and second.json()["body"] == '{"n":2}'
    assert second.headers["x-request-id"] == second.headers["x-corral-request-id"]  # no client id
    assert second.headers["x-corral-request-id"] != first.headers["x-corral-request-id"]

    third = await client.request(post("/echo?stream=true&x=/y", b"three"))
    assert third.status == 200
    assert third.json()["path"] == "/echo" and third.json()["body"] == "three"
    assert edge.calls == ["/echo", "/echo", "/echo"]


async def test_request_split_across_many_writes(edge: Edge) -> None:
    client = await edge.connect()
    data = post("/echo", b'{"split":"yes"}', headers="X-A: 1\r\n")
    for i in range(0, len(data), 7):
        await client.send(data[i : i + 7])
        await asyncio.sleep(0)
    response = await client.response()
    assert response.status == 200 and response.json()["body"] == '{"split":"yes"}'


async def test_empty_body_and_repeated_header_fields(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/echo", b"", headers="X-Dup: a\r\nX-Dup: b\r\n"))
    assert response.status == 200
    assert response.json()["body"] == "" and response.json()["headers"]["x-dup"] == "a, b"


# -- hand-over to aiohttp ---------------------------------------------------------------------


async def test_cold_request_first_is_served_by_aiohttp(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(get("/cold"))
    assert response.status == 200 and response.body == b"cold"
    again = await client.request(get("/cold?x=1"))
    assert again.status == 200 and again.body == b"cold"


async def test_hot_then_cold_then_hot_on_one_connection(edge: Edge) -> None:
    client = await edge.connect()
    hot = await client.request(post("/echo", b"a"))
    assert hot.status == 200 and hot.json()["body"] == "a"
    cold = await client.request(get("/cold"))
    assert cold.status == 200 and cold.body == b"cold"
    # one server keeps the connection throughout: no hand-over, every route on every request
    later = await client.request(post("/echo", b"b"))
    assert later.status == 200 and later.json()["body"] == "b"
    assert edge.calls == ["/echo", "/cold", "/echo"]
    still = await client.request(get("/cold"))
    assert still.status == 200 and still.body == b"cold"


async def test_wrong_method_is_405_naming_the_allowed_ones_and_keeps_the_connection(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(get("/echo"))
    assert response.status == 405 and response.headers["allow"] == "POST"
    assert_envelope(response.body, "invalid_request_error", "method_not_allowed")
    assert edge.calls == []
    assert (await client.request(post("/echo", b"x"))).status == 200


async def test_unknown_path_is_404_in_the_envelope_of_its_surface(edge: Edge) -> None:
    client = await edge.connect()
    openai = await client.request(get("/nowhere"))
    assert openai.status == 404
    assert_envelope(openai.body, "not_found_error", "not_found")
    ollama = await client.request(get("/api/nowhere"))
    assert ollama.status == 404 and set(ollama.json()) == {"error"}
    star = await client.request(b"OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n")
    assert star.status == 404  # the asterisk form: no route, answered like any other miss


async def test_cold_request_sent_during_a_hot_answer_is_answered_after_it(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/wait"))
    await edge.entered.wait()
    await client.send(get("/cold"))  # its own read: it starts at a read boundary
    assert await client.silent()
    edge.release.set()
    hot = await client.response()
    assert hot.status == 200 and hot.body == b'{"waited":true}'
    cold = await client.response()
    assert cold.status == 200 and cold.body == b"cold"


@pytest.mark.parametrize(
    "first",
    [b"GET /co", b"GET /cold HTTP/1.1\r\nHo", b"GET /cold HTTP/1.1\r\nHost: te", b"GET /cold HTTP/1.1\r\n"],
)
async def test_cold_request_split_across_reads_is_answered_whole(edge: Edge, first: bytes) -> None:
    whole = b"GET /cold HTTP/1.1\r\nHost: test\r\n\r\n"
    client = await edge.connect()
    await client.send(first)
    # the server has read and parsed the first part alone: it is inside the request's head
    await eventually(lambda: any(conn.in_head for conn in edge.server.connections))
    assert edge.calls == []
    response = await client.request(whole[len(first) :])
    assert response.status == 200 and response.body == b"cold"
    assert edge.calls == ["/cold"]


async def test_cold_request_whose_body_arrives_after_the_hand_over(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(b"POST /not-hot HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n01234")
    await asyncio.sleep(0.01)
    response = await client.request(b"56789")
    assert response.status == 404
    assert (await client.request(get("/cold"))).body == b"cold"  # the body was consumed exactly


# -- pipelining -------------------------------------------------------------------------------


async def test_pipelined_hot_requests_are_answered_in_order(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/wait") + post("/echo", b"second") + chunked_post("/echo", [b"third"]))
    await edge.entered.wait()
    assert await client.silent()  # the second answer waits for the first
    edge.release.set()
    assert (await client.response()).body == b'{"waited":true}'
    assert (await client.response()).json()["body"] == "second"
    assert (await client.response()).json()["body"] == "third"
    assert (await client.request(post("/echo", b"after"))).json()["body"] == "after"


async def test_more_pipelined_requests_than_the_queue_holds(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/wait"))
    await edge.entered.wait()
    for n in range(8):  # separate reads: past MAX_QUEUED the server stops reading, then resumes
        await client.send(post("/echo", str(n).encode()))
        await asyncio.sleep(0.005)
    edge.release.set()
    assert (await client.response()).status == 200
    assert [(await client.response()).json()["body"] for _ in range(8)] == [str(n) for n in range(8)]
    assert (await client.request(post("/echo", b"after"))).json()["body"] == "after"


async def test_pipelined_cold_request_mid_read_is_served_in_order(edge: Edge) -> None:
    client = await edge.connect()
    data = post("/echo", b"0123456789")
    await client.send(data[:-4])
    await asyncio.sleep(0.02)
    await client.send(data[-4:] + get("/cold"))  # the GET starts in the middle of a read
    hot = await client.response()
    assert hot.status == 200 and hot.json()["body"] == "0123456789"
    cold = await client.response()
    assert cold.status == 200 and cold.body == b"cold"
    assert edge.calls == ["/echo", "/cold"]


async def test_hot_and_cold_pipelined_in_one_write(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/echo", b"once") + get("/cold"))
    hot = await client.response()
    assert hot.status == 200 and hot.json()["body"] == "once"
    cold = await client.response()
    assert cold.status == 200 and cold.body == b"cold"
    assert edge.calls == ["/echo", "/cold"]  # the POST ran once: nothing was replayed


async def test_garbage_pipelined_after_a_hot_request_closes_after_its_answer(edge: Edge) -> None:
    # documented in EdgeProtocol._refuse_now: an unparsable request behind answers in progress is
    # not answered; the connection closes once the answers before it are out
    client = await edge.connect()
    await client.send(post("/echo", b"fine") + b"NOT HTTP AT ALL\r\n\r\n")
    response = await client.response()
    assert response.status == 200 and response.json()["body"] == "fine"
    assert await client.closed()


# -- limits -----------------------------------------------------------------------------------


async def test_content_length_over_the_limit_is_413_before_the_body(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\n\r\n")
    response = await client.response()
    assert response.status == 413 and response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"
    error = assert_envelope(response.body, "invalid_request_error", "body_too_large")
    assert "1001" in str(error["message"]) and "1000" in str(error["message"])
    assert await client.closed()
    assert edge.calls == []


async def test_body_at_the_limit_is_accepted(edge: Edge) -> None:
    client = await edge.connect()
    assert (await client.request(post("/echo", b"x" * 1000))).status == 200
    assert (await client.request(chunked_post("/echo", [b"x" * 500, b"y" * 500]))).status == 200


async def test_chunked_body_growing_past_the_limit_is_413(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    await client.send(b"258\r\n" + b"x" * 600 + b"\r\n")
    await asyncio.sleep(0.01)
    await client.send(b"258\r\n" + b"x" * 600 + b"\r\n")
    response = await client.response()
    assert response.status == 413 and response.headers["connection"] == "close"
    assert_envelope(response.body, "invalid_request_error", "body_too_large")
    assert await client.closed()
    assert edge.calls == []


async def test_413_under_api_uses_ollamas_error_body(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(b"POST /api/chat HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n")
    response = await client.response()
    assert response.status == 413 and response.headers["connection"] == "close"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and "5000" in body["error"]
    assert await client.closed()

    chunked = await edge.connect()
    response = await chunked.request(chunked_post("/api/chat", [b"x" * 900, b"x" * 900]))
    assert response.status == 413 and set(response.json()) == {"error"}
    assert isinstance(response.json()["error"], str)


async def test_413_with_expect_100_continue_sends_no_continue(edge: Edge) -> None:
    client = await edge.connect()
    head = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4000\r\nExpect: 100-continue\r\n\r\n"
    response = await client.request(head)
    assert response.status == 413
    assert await client.closed()


async def test_head_that_never_ends_is_431(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nX-Big: ")
    for _ in range(9):
        await client.send(b"a" * 8192)
        await asyncio.sleep(0.002)
    response = await client.response()
    assert response.status == 431 and response.headers["connection"] == "close"
    assert_envelope(response.body, "invalid_request_error", "header_too_large")
    assert await client.closed()


async def test_head_over_64_kib_in_one_write_without_its_end_is_431(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(b"GET /cold HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024))
    assert response.status == 431
    assert await client.closed()


async def test_head_over_64_kib_still_unfinished_is_431(edge: Edge) -> None:
    client = await edge.connect()
    lines = "".join(f"X-H{n}: {'v' * 1000}\r\n" for n in range(70))  # 70 fields, ~70 KiB
    data = post("/echo", b"{}", headers=lines)
    await client.send(data[: 60 * 1024])
    await asyncio.sleep(0.01)
    await client.send(data[60 * 1024 : 66 * 1024])  # past 64 KiB, the head not yet ended
    response = await client.response()
    assert response.status == 431 and response.headers["connection"] == "close"
    assert await client.closed()
    assert edge.calls == []


@pytest.mark.parametrize("first_write", [None, 32 * 1024], ids=["one-write", "two-writes"])
async def test_complete_head_over_64_kib_is_431(edge: Edge, first_write: int | None) -> None:
    client = await edge.connect()
    lines = "".join(f"X-H{n}: {'v' * 1000}\r\n" for n in range(70))  # 70 fields, ~70 KiB
    data = post("/echo", b"{}", headers=lines)
    if first_write is not None:
        await client.send(data[:first_write])
        await asyncio.sleep(0.01)
        data = data[first_write:]
    response = await client.request(data)
    assert response.status == 431


async def test_more_than_128_header_fields_is_431(edge: Edge) -> None:
    client = await edge.connect()
    lines = "".join(f"X-H{n}: v\r\n" for n in range(129))  # with Host and Content-Length: 131
    response = await client.request(post("/echo", b"{}", headers=lines))
    assert response.status == 431 and response.headers["connection"] == "close"
    assert_envelope(response.body, "invalid_request_error", "header_too_large")
    assert await client.closed()
    assert edge.calls == []


async def test_128_header_fields_are_accepted(edge: Edge) -> None:
    client = await edge.connect()
    lines = "".join(f"X-H{n}: v\r\n" for n in range(126))  # with Host and Content-Length: 128
    assert (await client.request(post("/echo", b"{}", headers=lines))).status == 200


async def test_more_than_128_fields_with_one_name_is_431(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/echo", b"{}", headers="X-Same: v\r\n" * 200))
    assert response.status == 431


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
        b"HELLO\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: nope\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["tls", "not-http", "bad-length", "length-and-chunked", "bad-chunk"],
)
async def test_invalid_http_is_400_and_closes(edge: Edge, data: bytes) -> None:
    client = await edge.connect()
    response = await client.request(data)
    assert response.status == 400 and response.headers["connection"] == "close"
    assert_envelope(response.body, "invalid_request_error", "bad_request")
    assert await client.closed()
    assert edge.calls == []


# -- Expect: 100-continue -----------------------------------------------------------------------


async def test_expect_100_continue(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.response()
    assert interim.status == 100
    await client.send(b"hello")
    response = await client.response()
    assert response.status == 200 and response.json()["body"] == "hello"
    # and the connection goes on
    assert (await client.request(post("/echo", b"next"))).json()["body"] == "next"


async def test_request_without_expect_gets_no_continue(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n")
    assert await client.silent()
    await client.send(b"hello")
    assert (await client.response()).status == 200


# -- closing ----------------------------------------------------------------------------------


async def test_connection_close_closes_after_the_answer(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/echo", b"bye", headers="Connection: close\r\n") + post("/echo", b"ignored"))
    response = await client.response()
    assert response.status == 200 and response.json()["body"] == "bye"
    assert response.headers["connection"] == "close"
    assert await client.closed()
    assert edge.calls == ["/echo"]


async def test_http_10_closes_after_the_answer(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/echo", b"old", version="1.0"))
    assert response.status == 200 and response.json()["body"] == "old"
    assert response.headers["connection"] == "close"
    assert await client.closed()


async def test_half_closed_client_still_gets_its_answer(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/echo", b"half"))
    client.writer.write_eof()
    response = await client.response()
    assert response.status == 200 and response.json()["body"] == "half"
    assert await client.closed()


async def test_half_close_during_a_slow_answer_and_pipelined_requests(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/wait") + post("/echo", b"2"))
    client.writer.write_eof()
    await edge.entered.wait()
    await asyncio.sleep(0.01)
    edge.release.set()
    assert (await client.response()).body == b'{"waited":true}'
    assert (await client.response()).json()["body"] == "2"
    assert await client.closed()


async def test_client_closing_while_idle_closes_the_server_side(edge: Edge) -> None:
    client = await edge.connect()
    assert (await client.request(post("/echo"))).status == 200
    client.writer.write_eof()
    assert await client.closed()
    await eventually(lambda: not edge.server.connections)


# -- errors -----------------------------------------------------------------------------------


async def test_corral_error_gets_its_status_and_envelope(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/invalid", headers="X-Request-Id: abc-123\r\n"))
    assert response.status == 400
    error = assert_envelope(response.body, "invalid_request_error", "wrong_thing")
    assert error["param"] == "messages" and error["message"] == "That request is wrong."
    assert response.headers["x-corral-request-id"].startswith("req_")
    assert response.headers["x-request-id"] == "abc-123"
    assert "connection" not in response.headers
    # the connection goes on
    assert (await client.request(post("/echo", b"ok"))).json()["body"] == "ok"


async def test_authentication_error_has_www_authenticate(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/auth"))
    assert response.status == 401
    assert_envelope(response.body, "authentication_error", "missing_api_key")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-corral-request-id"].startswith("req_")


async def test_corral_error_under_api_uses_ollamas_error_body(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/api/invalid"))
    assert response.status == 400
    assert response.json() == {"error": "That request is wrong."}
    assert response.headers["x-corral-request-id"].startswith("req_")


async def test_unexpected_exception_is_500_and_closes(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/boom", headers="X-Request-Id: mine\r\n"))
    assert response.status == 500
    error = assert_envelope(response.body, "server_error", "internal_error")
    rid = response.headers["x-corral-request-id"]
    assert rid in str(error["message"])
    assert response.headers["x-request-id"] == "mine"
    assert "a bug" not in response.body.decode()
    assert await client.closed()


async def test_handler_writing_nothing_is_500(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/silent"))
    assert response.status == 500
    assert_envelope(response.body, "server_error", "internal_error")
    assert await client.closed()


@pytest.mark.parametrize("path", ["/boom", "/silent"])
async def test_500_says_connection_close(edge: Edge, path: str) -> None:
    client = await edge.connect()
    response = await client.request(post(path))
    assert response.status == 500
    assert await client.closed()
    assert response.headers.get("connection") == "close"


async def test_error_after_a_stream_started_closes_without_the_end_marker(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/stream-fails"))
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked\r\n" in head
    assert await client.rest() == b"3\r\none\r\n"


async def test_header_with_a_line_break_in_a_stream_is_500(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/bad-header-stream"))
    assert response.status == 500
    assert_envelope(response.body, "server_error", "internal_error")
    assert "set-cookie" not in response.headers
    assert await client.closed()


async def test_header_with_a_line_break_in_a_whole_answer_is_500(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/bad-header"))
    raw = await client.rest()
    assert b"Set-Cookie" not in raw
    assert raw.startswith(b"HTTP/1.1 500 ")


async def test_error_with_a_line_break_in_its_headers_is_500(edge: Edge) -> None:
    async def bad_error(ex: Exchange) -> None:
        error = InvalidRequest("Slow down.")
        error.headers = {"Retry-After": "1\r\nSet-Cookie: x=1"}  # type: ignore[attr-defined]
        raise error

    edge.server.routes.add(["POST"], "/bad-error", Route(bad_error, access="open"))
    client = await edge.connect()
    await client.send(post("/bad-error"))
    async with asyncio.timeout(0.3):
        raw = await client.rest()
    assert raw.startswith(b"HTTP/1.1 500 ") and b"Set-Cookie" not in raw


# -- streams ----------------------------------------------------------------------------------


async def test_stream_framing(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/stream"))
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/event-stream\r\n" in head and b"Transfer-Encoding: chunked\r\n" in head
    assert b"Content-Length" not in head and b"Connection: close" not in head
    assert b"x-corral-request-id: req_" in head
    async with asyncio.timeout(2):
        framed = await client.reader.readuntil(b"0\r\n\r\n")
    assert framed == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n"
    # keep-alive after a stream
    assert (await client.request(post("/stream"))).chunks == [b"one", b"two", b"three"]


async def test_stream_that_says_it_ended_is_complete_at_its_last_chunk(edge: Edge) -> None:
    client = await edge.connect()
    response = await client.request(post("/stream-ended"))
    assert response.status == 200 and response.chunks == [b"first", b"last"]
    await eventually(lambda: edge.finished == ["stream-ended"])  # the iterator was closed
    assert (await client.request(post("/echo", b"next"))).json()["body"] == "next"


async def test_client_leaving_mid_stream_closes_the_iterator(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/stream-forever"))
    await client.reader.readuntil(b"\r\n\r\n")
    assert await client.reader.readuntil(b"4\r\ntick\r\n")
    client.writer.transport.abort()  # type: ignore[attr-defined]
    await eventually(lambda: edge.finished == ["stream-forever"])
    await eventually(lambda: not edge.server.connections)


async def test_client_closing_mid_stream_closes_the_iterator(edge: Edge) -> None:
    client = await edge.connect()
    await client.send(post("/stream-forever"))
    await client.reader.readuntil(b"4\r\ntick\r\n")
    client.close()
    await eventually(lambda: edge.finished == ["stream-forever"])
    await eventually(lambda: not edge.server.connections)


async def test_h2c_upgrade_offer_on_a_hot_post(edge: Edge) -> None:
    client = await edge.connect()
    headers = (
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
    )
    response = await client.request(post("/echo", b"up", headers=headers))
    if response.status == 200:  # the Upgrade ignored, as a server may
        assert response.json()["body"] == "up"
    else:  # or refused without running the handler
        assert response.status == 400 and edge.calls == []


async def test_pipelined_head_after_a_large_body() -> None:
    large = await Edge(max_body=200_000).start()
    try:
        client = await large.connect()
        data = post("/echo", b"x" * 100_000)
        await client.send(data[:-10])  # one read of ~100 KB, head and body
        await asyncio.sleep(0.02)
        await client.send(data[-10:] + b"POST /echo HTTP/1.1\r\nHost: test\r\n")  # the next head begins
        await asyncio.sleep(0.02)
        await client.send(b"Content-Length: 2\r\n\r\nhi")
        first = await client.response()
        assert first.status == 200 and len(first.json()["body"]) == 100_000
        second = await client.response()
        assert second.status == 200 and second.json()["body"] == "hi"
    finally:
        await large.stop()
