"""Usage records, limits and /metrics on a gateway with its control plane."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text

from corral.http.observability import SPILL_FILE
from corral.store.tables import usage
from corral.usage import UsageWriter
from corral.usage.spill import SpillFile
from tests.emulators.ollama import OllamaEmulator
from tests.support.gateway import GatewayServer, make_config
from tests.support.servers import ServerThread
from tests.usage.factory import records

MSG = [{"role": "user", "content": "one two three"}]  # the emulator answers "Echo: one two three": 4 tokens


@pytest.fixture
def upstream() -> Iterator[ServerThread]:
    with ServerThread(OllamaEmulator().app) as server:
        yield server


def gateway(url: str, home: Path, **env: str) -> GatewayServer:
    config = make_config(
        {
            "providers": [{"name": "gpu", "type": "ollama", "base_url": url, "max_parallel": 0}],
            "prices": {"gpu/*": {"input": 1.0, "output": 2.0}, "llama3.2": {"input": 1.0, "output": 2.0}},
        }
    )
    return GatewayServer(config, home=home, env=env)


def rows(gw: GatewayServer) -> list[dict]:  # type: ignore[type-arg]
    async def fetch() -> list[dict]:  # type: ignore[type-arg]
        plane = gw.app.parts.control
        async with plane.store.engine.connect() as conn:
            result = await conn.execute(select(usage))
            return [dict(r._mapping) for r in result]

    return gw.call(fetch)  # type: ignore[no-any-return]


def wait_rows(gw: GatewayServer, n: int) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 10
    got = rows(gw)
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
        got = rows(gw)
    return got


def test_every_request_makes_exactly_one_record_with_tokens(upstream: ServerThread, tmp_path: Path) -> None:
    with gateway(upstream.url, tmp_path) as gw, httpx.Client(timeout=30) as client:

        def one(i: int) -> int:
            body = {
                "model": "gpu/llama3.2",
                "messages": MSG,
                "stream": i % 2 == 0,
                "stream_options": {"include_usage": True},
            }
            return client.post(gw.v1 + "/chat/completions", json=body, headers=gw.headers()).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(40)))
        assert statuses == [200] * 40
        native = client.post(
            gw.url + "/api/chat",
            headers=gw.headers(),
            json={"model": "gpu/llama3.2", "messages": MSG, "stream": True},
        )
        assert native.status_code == 200
        missing = client.post(
            gw.v1 + "/chat/completions", json={"model": "nope", "messages": MSG}, headers=gw.headers()
        )
        assert missing.status_code == 404
        got = wait_rows(gw, 42)
        metrics = client.get(gw.admin_url + "/metrics", headers=gw.headers()).text
    assert len(got) == 42 and len({r["request_id"] for r in got}) == 42
    served = [r for r in got if r["status"] == 200]
    assert len(served) == 41
    assert all(r["completion_tokens"] == 4 and not r["tokens_estimated"] for r in served)
    assert all(r["provider"] == "gpu" and r["key_id"] == "master" for r in served)
    assert all(r["cost_usd"] == pytest.approx((r["prompt_tokens"] * 1.0 + 4 * 2.0) / 1e6) for r in served)
    assert {r["streamed"] for r in served} == {True, False}
    failed = [r for r in got if r["status"] == 404]
    assert len(failed) == 1 and failed[0]["error_class"] == "model_not_found"
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    total = sum(s.value for f in families.values() for s in f.samples if s.name == "corral_requests_total")
    assert total == 42
    dropped = [
        s.value for f in families.values() for s in f.samples if s.name == "corral_usage_writer_dropped_total"
    ]
    assert dropped and all(v == 0 for v in dropped)


def test_shutdown_during_load_loses_no_record(upstream: ServerThread, tmp_path: Path) -> None:
    gw = gateway(upstream.url, tmp_path).start()
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:

        def one(i: int) -> int:
            try:
                return client.post(
                    gw.v1 + "/chat/completions",
                    headers=gw.headers(),
                    json={"model": "gpu/llama3.2", "messages": MSG},
                ).status_code
            except httpx.TransportError:
                return -1

        futures = [pool.submit(one, i) for i in range(60)]
        gw.stop()  # graceful: in-flight requests finish, usage is flushed
        answered = sum(1 for f in futures if f.result() == 200)
    with gateway(upstream.url, tmp_path) as again:
        got = wait_rows(again, answered)
    assert len([r for r in got if r["status"] == 200]) == answered


def key_with(gw: GatewayServer, **limits: object) -> str:
    async def make() -> str:
        plane = gw.app.parts.control
        issued = await plane.store.keys.create(actor="test", name="limited", limits=limits)
        return str(issued.key)

    return gw.call(make)  # type: ignore[no-any-return]


def test_rpm_limit_is_a_429_with_retry_after(upstream: ServerThread, tmp_path: Path) -> None:
    with gateway(upstream.url, tmp_path) as gw, httpx.Client(timeout=30) as client:
        key = key_with(gw, rpm=3)
        answers = [
            client.post(
                gw.v1 + "/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "gpu/llama3.2", "messages": MSG},
            )
            for _ in range(4)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    err = answers[-1].json()["error"]
    assert err["type"] == "rate_limit_error" and "rpm" in err["message"]
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert key not in answers[-1].text


@pytest.mark.redis
def test_limits_hold_across_two_gateways_sharing_redis(upstream: ServerThread, tmp_path: Path) -> None:
    redis_url = os.environ.get("CORRAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not reachable at {redis_url}: {exc}")
    import secrets

    prefix = f"corral-test-{secrets.token_hex(6)}:"
    env = {"CORRAL_REDIS_URL": redis_url, "CORRAL_REDIS_PREFIX": prefix}
    with gateway(upstream.url, tmp_path, **env) as a:
        key = key_with(a, rpm=4)
        with gateway(upstream.url, tmp_path, **env) as b, httpx.Client(timeout=30) as client:
            codes = [
                client.post(
                    gw.v1 + "/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"model": "gpu/llama3.2", "messages": MSG},
                ).status_code
                for gw in (a, b, a, b, a, b)
            ]
    assert codes == [200, 200, 200, 200, 429, 429]
    r = redis.Redis.from_url(redis_url)
    mine = list(r.scan_iter(f"{prefix}*"))
    assert mine  # the limits really lived in Redis
    r.delete(*mine)


def test_user_limits_apply_across_the_users_keys(upstream: ServerThread, tmp_path: Path) -> None:
    config = make_config(
        {
            "providers": [{"name": "gpu", "type": "ollama", "base_url": upstream.url}],
            "user_limits": {"alice": {"rpm": 3}},
        }
    )
    with GatewayServer(config, home=tmp_path) as gw, httpx.Client(timeout=30) as client:

        async def make(owner: str) -> str:
            issued = await gw.app.parts.control.store.keys.create(actor="test", owner=owner)
            return str(issued.key)

        first, second, bob = (gw.call(lambda o=o: make(o)) for o in ("alice", "alice", "bob"))
        codes = [
            client.post(
                gw.v1 + "/chat/completions",
                headers={"Authorization": f"Bearer {k}"},
                json={"model": "gpu/llama3.2", "messages": MSG},
            ).status_code
            for k in (first, second, first, second, bob)
        ]
    assert codes == [200, 200, 200, 429, 200]  # alice's two keys share her 3 rpm; bob is not limited


def test_each_surface_names_its_end_user_in_usage(upstream: ServerThread, tmp_path: Path) -> None:
    """``user`` (OpenAI), ``safety_identifier`` (Responses), ``metadata.user_id`` (Messages; Claude
    Code's JSON string gives its account, else its device, never its session) land in usage."""
    claude = orjson.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s-1"}).decode()
    calls = [
        ("/chat/completions", {"model": "gpu/llama3.2", "messages": MSG, "user": "carol"}),
        ("/responses", {"model": "gpu/llama3.2", "input": "hi", "safety_identifier": "dave"}),
        (
            "/messages",
            {"model": "gpu/llama3.2", "max_tokens": 20, "messages": MSG, "metadata": {"user_id": "erin"}},
        ),
        (
            "/messages",
            {"model": "gpu/llama3.2", "max_tokens": 20, "messages": MSG, "metadata": {"user_id": claude}},
        ),
        ("/messages", {"model": "gpu/llama3.2", "max_tokens": 20, "messages": MSG}),
    ]
    with gateway(upstream.url, tmp_path) as gw, httpx.Client(timeout=30) as client:
        ids = []
        for path, body in calls:
            answer = client.post(gw.v1 + path, json=body, headers=gw.headers())
            assert answer.status_code == 200, answer.text
            ids.append(answer.headers["x-corral-request-id"])
        users = {r["request_id"]: r["user"] for r in wait_rows(gw, len(calls))}
    assert [users[i] for i in ids] == ["carol", "dave", "erin", "d" * 64, None]


def test_a_repeated_client_request_id_still_makes_one_record_per_request(
    upstream: ServerThread, tmp_path: Path
) -> None:
    """Clients repeat X-Request-Id (retries, fixed values): each request keeps its own record."""
    with gateway(upstream.url, tmp_path) as gw, httpx.Client(timeout=30) as client:
        body = {"model": "gpu/llama3.2", "messages": MSG}
        answers = [
            client.post(
                gw.v1 + "/chat/completions", json=body, headers={**gw.headers(), "x-request-id": "job-7"}
            ),
            client.post(gw.url + "/api/chat", json=body, headers={**gw.headers(), "x-request-id": "job-7"}),
            client.post(gw.v1 + "/chat/completions", json=body, headers=gw.headers()),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["x-request-id"] for a in answers[:2]] == ["job-7", "job-7"]
        ours = [a.headers["x-corral-request-id"] for a in answers]
        assert len(set(ours)) == 3 and answers[2].headers["x-request-id"] == ours[2]
        got = {r["request_id"]: r["client_request_id"] for r in wait_rows(gw, 3)}
    assert got == {ours[0]: "job-7", ours[1]: "job-7", ours[2]: None}


def test_writer_spills_and_replays_and_metrics_show_its_stats(upstream: ServerThread, tmp_path: Path) -> None:
    """A spill left by an earlier run (with one torn line) is replayed at start; the usage table
    goes away (writes fail and spill) and comes back (the spill is replayed); /metrics shows the
    writer's counters exactly."""
    left = SpillFile(tmp_path / SPILL_FILE)
    left.append(records(2))
    left.close()
    with open(tmp_path / SPILL_FILE, "ab") as spill:
        spill.write(b'{"request_id": "torn-by-a-crash"\n')

    def rename(old: str, new: str) -> None:
        async def run() -> None:
            async with gw.app.parts.control.store.engine.begin() as conn:
                await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))  # fixed names, no input

        gw.call(run)

    def stats_when(condition: Callable[[dict[str, int]], bool]) -> dict[str, int]:
        deadline = time.monotonic() + 20
        while True:
            stats = dataclasses.asdict(writer.stats)
            if condition(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    with gateway(upstream.url, tmp_path) as gw, httpx.Client(timeout=30) as client:
        writer = gw.app.parts.accountant.writer
        assert isinstance(writer, UsageWriter)
        at_start = stats_when(lambda s: s["replayed"] == 2)
        assert (at_start["replayed"], at_start["rejected"]) == (2, 1)
        rename("usage", "usage_away")
        for _ in range(5):
            answer = client.post(
                gw.v1 + "/chat/completions",
                headers=gw.headers(),
                json={"model": "gpu/llama3.2", "messages": MSG},
            )
            assert answer.status_code == 200  # serving does not wait for the usage table
        failing = stats_when(lambda s: s["spilled"] == 5 and s["sink_errors"] >= 1)
        assert (failing["spilled"], failing["written"], failing["queue_depth"]) == (5, 0, 0)
        rename("usage_away", "usage")
        final = stats_when(lambda s: s["replayed"] == 7)
        text_metrics = client.get(gw.admin_url + "/metrics", headers=gw.headers()).text
        assert len(wait_rows(gw, 7)) == 7
    assert final["replayed"] == 7 and final["rejected"] == 1 and final["sink_errors"] >= 1
    assert final["dropped"] == 0
    scraped = {
        s.name: s.value
        for f in text_string_to_metric_families(text_metrics)
        for s in f.samples
        if s.name.startswith("corral_usage_writer_")
    }
    assert scraped == {
        "corral_usage_writer_queue_depth": final["queue_depth"],
        "corral_usage_writer_dropped_total": final["dropped"],
        "corral_usage_writer_spilled_total": final["spilled"],
        "corral_usage_writer_written_total": final["written"],
        "corral_usage_writer_replayed_total": final["replayed"],
        "corral_usage_writer_rejected_total": final["rejected"],
        "corral_usage_writer_sink_errors_total": final["sink_errors"],
    }
