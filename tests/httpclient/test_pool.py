"""The pool: keep-alive reuse, the stale-connection retry, the connection bound, connect failures,
the request bytes on the wire, closing, and TLS. Servers are raw ``asyncio.start_server`` handlers.
"""

from __future__ import annotations

import asyncio

import pytest

from corral import __version__
from corral.config.schema import ProviderConfig
from corral.errors import UpstreamError, UpstreamUnavailable
from corral.httpclient import ConnectFailed, ConnectTimeout, Disconnected, Pool, TLSFailed
from corral.providers.upstream import JSON_BODY, make_pool, upstream_errors
from tests.httpclient.rawserver import Conn, answer, eventually, keep_answering
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(20)


# -- keep-alive ------------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(serve, pool) -> None:
    server = await serve(keep_answering)
    client = pool(server.url())
    for path in ("/a", "/b", "/c"):
        response = await client.request("GET", path)
        assert await response.read() == path.encode()
    assert server.accepted == 1
    assert [r.path for r in server.conns[0].requests] == ["/a", "/b", "/c"]


@pytest.mark.parametrize(
    "ending",
    [b"HTTP/1.1 200 OK\r\nConnection: close\r\n", b"HTTP/1.0 200 OK\r\n"],
    ids=["connection-close", "http-1.0"],
)
async def test_answer_that_does_not_keep_alive_is_not_reused(serve, pool, ending) -> None:
    async def handler(conn: Conn) -> None:
        while await conn.read_request() is not None:
            await conn.send(ending + b"Content-Length: 2\r\n\r\nok")

    server = await serve(handler)
    client = pool(server.url())
    for _ in range(2):
        assert await (await client.request("GET", "/")).read() == b"ok"
    assert server.accepted == 2
    await eventually(lambda: client.in_use == 0)


async def test_idle_connection_closed_by_server_is_replaced(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()
        await conn.send(answer(b"once"))  # keep-alive by the headers, but the server closes

    server = await serve(handler)
    client = pool(server.url())
    assert await (await client.request("GET", "/")).read() == b"once"
    await eventually(lambda: 1 in server.closed)
    await asyncio.sleep(0.05)
    assert await (await client.request("GET", "/")).read() == b"once"
    assert server.accepted == 2


def closes_on_second_request(conn: Conn):
    """Answers the first request, then closes on receiving the next one without answering
    (the server timed the idle connection out just as the client reused it)."""

    async def run() -> None:
        await conn.read_request()
        await conn.send(answer(b"first"))
        await conn.read_request()

    return run()


async def test_stale_reused_connection_is_retried_once_on_a_fresh_one(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await (closes_on_second_request(conn) if conn.number == 1 else keep_answering(conn))

    server = await serve(handler)
    client = pool(server.url())
    assert await (await client.request("GET", "/")).read() == b"first"
    response = await client.request("GET", "/again")
    assert await response.read() == b"/again"
    assert server.accepted == 2
    assert [r.path for r in server.conns[0].requests] == ["/", "/again"]
    assert [r.path for r in server.conns[1].requests] == ["/again"]


async def test_stale_retry_happens_only_once(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        if conn.number == 1:
            await closes_on_second_request(conn)
        else:
            await conn.read_request()  # the fresh connection closes before answering too

    server = await serve(handler)
    client = pool(server.url())
    await (await client.request("GET", "/")).read()
    with pytest.raises(Disconnected) as caught:
        await client.request("GET", "/again")
    assert caught.value.before_response is True
    assert server.accepted == 2


async def test_stale_retry_goes_to_a_fresh_connection_not_another_idle_one(serve, pool) -> None:
    """Two idle connections the server has timed out: the retry must open a new connection
    (pool.py: "is sent once more on a fresh connection"), not try the other stale one."""
    both_open = asyncio.Event()

    async def handler(conn: Conn) -> None:
        if conn.number <= 2:
            await conn.read_request()
            if conn.number == 2:
                both_open.set()
            await both_open.wait()  # both first answers are held until both connections exist
            await conn.send(answer(b"first"))
            await conn.read_request()  # then closes on the next request, unanswered
        else:
            await keep_answering(conn)

    server = await serve(handler)
    client = pool(server.url(), max_connections=2)
    first = await asyncio.gather(client.request("GET", "/"), client.request("GET", "/"))
    for response in first:
        assert await response.read() == b"first"
    assert server.accepted == 2
    response = await client.request("GET", "/again")
    assert await response.read() == b"/again"


async def test_fresh_connection_closed_before_answering_is_disconnected(serve, pool) -> None:
    async def handler(conn: Conn) -> None:
        await conn.read_request()  # and close without a byte of answer

    server = await serve(handler)
    client = pool(server.url())
    with pytest.raises(Disconnected) as caught:
        await client.request("POST", "/", b"{}")
    assert caught.value.before_response is True
    assert server.accepted == 1  # a fresh connection is not retried
    assert client.in_use == 0


# -- the connection bound ------------------------------------------------------------------


def held_answers(release: asyncio.Event):
    """Each answer's last bytes wait for ``release``."""

    async def handler(conn: Conn) -> None:
        while (request := await conn.read_request()) is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            if request.path == "/held":
                await release.wait()
            await conn.send(b"cd")

    return handler


async def one_held_connection(serve, pool, connect_timeout: float):
    """A pool of one connection, busy with an answer whose end waits for ``release.set()``."""
    release = asyncio.Event()
    server = await serve(held_answers(release))
    client = pool(server.url(), max_connections=1, connect_timeout=connect_timeout)
    first = await client.request("GET", "/held")
    return release, server, client, first


async def test_second_request_waits_for_the_only_connection(serve, pool) -> None:
    release, server, client, first = await one_held_connection(serve, pool, 5.0)
    second = asyncio.create_task(client.request("GET", "/next"))
    await asyncio.sleep(0.2)
    assert not second.done()
    assert len(server.requests) == 1
    release.set()
    assert await first.read() == b"abcd"
    assert await (await asyncio.wait_for(second, 2)).read() == b"abcd"
    assert server.accepted == 1
    assert [r.path for r in server.requests] == ["/held", "/next"]


async def test_waiting_longer_than_connect_timeout_is_connect_timeout(serve, pool) -> None:
    release, server, client, first = await one_held_connection(serve, pool, 0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectTimeout) as caught:
        await client.request("GET", "/next")
    assert isinstance(caught.value, TimeoutError)
    assert 0.25 <= loop.time() - started < 1.5
    release.set()
    assert await first.read() == b"abcd"
    assert await (await client.request("GET", "/after")).read() == b"abcd"
    assert server.accepted == 1


async def test_cancelled_waiter_leaks_no_slot(serve, pool) -> None:
    release, server, client, first = await one_held_connection(serve, pool, 5.0)
    waiter = asyncio.create_task(client.request("GET", "/never"))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    assert await first.read() == b"abcd"
    assert client.in_use == 0
    later = await asyncio.wait_for(client.request("GET", "/later"), 2)
    assert await later.read() == b"abcd"
    # an abandoned answer frees its slot too
    held = await client.request("GET", "/held")
    held.release()
    assert await (await asyncio.wait_for(client.request("GET", "/last"), 2)).read() == b"abcd"
    assert [r.path for r in server.requests] == ["/held", "/later", "/held", "/last"]


async def test_close_with_a_waiting_request_fails_it_cleanly(serve, pool) -> None:
    _release, _server, client, first = await one_held_connection(serve, pool, 5.0)
    waiter = asyncio.create_task(client.request("GET", "/next"))
    await asyncio.sleep(0.05)
    await client.close()
    results = await asyncio.gather(waiter, return_exceptions=True)
    assert isinstance(results[0], ConnectFailed | asyncio.CancelledError), repr(results[0])
    first.release()


# -- connect failures ------------------------------------------------------------------------


def provider(base_url: str, **fields) -> ProviderConfig:
    return ProviderConfig(name="up", type="openai", base_url=base_url, api_key="sk-secret-123", **fields)


async def fails_twice_then_maps(
    base_url: str, raw: type[Exception], mapped: type[UpstreamError], code: str, where: str
) -> None:
    """A connect failure raises ``raw`` and frees its slot (so the second try fails the same way,
    not with ConnectTimeout); through upstream_errors it is ``mapped`` with ``code``, naming
    ``where`` and never the key."""
    cfg = provider(base_url, max_connections=1, connect_timeout=2.0)
    client = make_pool(cfg)
    try:
        with pytest.raises(raw):
            await client.request("GET", "/models")
        assert client.in_use == 0
        with pytest.raises(mapped) as caught:
            async with upstream_errors(cfg):
                await client.request("GET", "/models")
    finally:
        await client.close()
    assert caught.value.code == code
    assert where in str(caught.value)
    assert "sk-secret" not in str(caught.value)


async def test_connect_refused_is_connect_failed_and_upstream_unreachable() -> None:
    port = free_port()  # bound, then closed: nothing listens there
    where = f"127.0.0.1:{port}"
    await fails_twice_then_maps(
        f"http://{where}/v1", ConnectFailed, UpstreamUnavailable, "upstream_unreachable", where
    )


# -- the request on the wire -------------------------------------------------------------------


async def test_request_bytes_as_the_server_receives_them(serve) -> None:
    server = await serve(keep_answering)
    cfg = provider(server.url("/v1/"), headers={"X-Org": "corral-tests"})
    client = make_pool(cfg)
    body = b'{"model": "m", "messages": [{"role": "user", "content": "h\xc3\xa9llo"}]}'
    try:
        response = await client.request("POST", "/chat/completions", body, JSON_BODY)
        assert await response.read() == b"/v1/chat/completions"
        await (await client.request("GET", "/models")).read()
        await (await client.request("POST", "/empty")).read()
    finally:
        await client.close()
    post, get, empty = server.requests
    assert post.line == "POST /v1/chat/completions HTTP/1.1"
    assert post.headers("host") == [f"127.0.0.1:{server.port}"]
    assert post.headers("authorization") == ["Bearer sk-secret-123"]
    assert post.headers("x-org") == ["corral-tests"]
    assert post.headers("content-type") == ["application/json"]
    assert post.headers("user-agent") == [f"corral/{__version__}"]
    assert post.headers("content-length") == [str(len(body))]
    assert post.body == body
    assert get.line == "GET /v1/models HTTP/1.1"
    assert get.headers("content-length") == [] and get.body == b""
    assert empty.headers("content-length") == ["0"]
    assert server.accepted == 1


async def test_host_header_leaves_out_the_default_port(serve, pool) -> None:
    try:
        server = await serve(keep_answering, port=80)
    except OSError as exc:  # not root, or port 80 taken
        pytest.skip(f"cannot listen on 127.0.0.1:80 ({exc})")
    client = pool("http://127.0.0.1/base")
    assert await (await client.request("GET", "/x")).read() == b"/base/x"
    assert server.requests[0].headers("host") == ["127.0.0.1"]


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nInjected: 1"}, {"X-Evil": "a\nb"}, {"Bad:Name": "v"}, {"Bad\r\nName": "v"}],
)
def test_header_that_could_split_the_request_is_refused(headers) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        Pool("http://127.0.0.1:9/", max_connections=1, connect_timeout=1, read_timeout=1, headers=headers)


def test_api_key_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="not allowed"):
        make_pool(ProviderConfig(name="up", type="openai", base_url="http://x/", api_key="k\r\nX: y"))


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding", "CONNECTION"])
def test_framing_headers_cannot_be_configured(name) -> None:
    with pytest.raises(ValueError, match="set by corral"):
        Pool("http://127.0.0.1:9/", max_connections=1, connect_timeout=1, read_timeout=1, headers={name: "1"})


# -- closing ---------------------------------------------------------------------------------


async def test_close_closes_idle_connections(serve, pool) -> None:
    server = await serve(keep_answering)
    client = pool(server.url())
    assert await (await client.request("GET", "/")).read() == b"/"
    assert server.closed == []
    await client.close()
    await eventually(lambda: 1 in server.closed)
    with pytest.raises(ConnectFailed):
        await client.request("GET", "/")
    assert server.accepted == 1


async def test_idle_connection_is_closed_after_keepalive(serve, pool) -> None:
    server = await serve(keep_answering)
    client = pool(server.url(), keepalive=0.2)
    assert await (await client.request("GET", "/")).read() == b"/"
    await eventually(lambda: 1 in server.closed)
    assert await (await client.request("GET", "/")).read() == b"/"
    assert server.accepted == 2


# -- TLS -------------------------------------------------------------------------------------


async def test_tls_without_verification_succeeds(tls_server, pool) -> None:
    client = pool(tls_server.url(scheme="https"), verify_ssl=False)
    for path in ("/secure", "/again"):
        assert await (await client.request("GET", path)).read() == path.encode()
    assert tls_server.accepted == 1


async def test_tls_verifies_against_trusted_roots(tls_server, pool, certificate, monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])  # trust the test certificate
    client = pool(tls_server.url(scheme="https"))
    assert await (await client.request("GET", "/trusted")).read() == b"/trusted"


async def test_untrusted_certificate_is_tls_failed_and_upstream_tls(tls_server) -> None:
    where = f"127.0.0.1:{tls_server.port}"
    await fails_twice_then_maps(
        tls_server.url(scheme="https"), TLSFailed, UpstreamError, "upstream_tls", where
    )
    assert tls_server.requests == []
