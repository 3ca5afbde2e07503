"""A gateway restart does not reset budgets: the spend of the current window is read from the
usage table at start, on SQLite and PostgreSQL, with the in-process limiter and with Redis."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.limits import parse_period
from corral.usage import StoreSink
from tests.support.gateway import GatewayServer, make_config
from tests.usage.factory import record

DAILY = {"max_budget": 1.0, "budget_period": "1d"}
CHAT = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}


def gateway(home: Path, env: dict[str, str]) -> GatewayServer:
    config = make_config({"user_limits": {"alice": DAILY}}, demo=True)
    return GatewayServer(config, home=home, env=env)


def today() -> datetime:
    """The start of the current "1d" window, at least a minute before it ends."""
    period = parse_period("1d")
    left = period.window(time.time())[1] - time.time()
    if left < 60:
        time.sleep(left + 1)  # never straddle UTC midnight
    return datetime.fromtimestamp(period.start(time.time()), UTC)


def prepare(gw: GatewayServer) -> dict[str, str]:
    """Keys with budgets, and usage rows as if they had been used before a restart."""
    start = today()

    async def run() -> dict[str, str]:
        store = gw.app.parts.control.store
        keys = {}
        for name, owner, limits in (("over", None, DAILY), ("fresh", None, DAILY), ("alice", "alice", {})):
            issued = await store.keys.create(actor="test", name=name, owner=owner, limits=limits)
            keys[name] = issued.key
            keys[name + "_id"] = issued.record.id
        rows: list[tuple[str, str | None, datetime, float]] = [
            (keys["over_id"], None, start, 0.7),  # today: 1.2 of 1.0
            (keys["over_id"], None, start + timedelta(seconds=30), 0.5),
            (keys["fresh_id"], None, start - timedelta(seconds=1), 40.0),  # yesterday: does not count
            (keys["fresh_id"], None, start + timedelta(seconds=1), 0.4),
            (keys["alice_id"], "alice", start + timedelta(seconds=2), 1.5),
        ]
        await StoreSink(store.engine).write(
            [
                record(i, request_id=f"before-restart-{i}", key_id=k, user=u, at=at, cost_usd=cost)
                for i, (k, u, at, cost) in enumerate(rows)
            ]
        )
        return keys

    return gw.call(run)  # type: ignore[no-any-return]


def restart_and_chat(home: Path, env: dict[str, str]) -> dict[str, httpx.Response]:
    with gateway(home, env) as first:
        keys = prepare(first)
    with gateway(home, env) as gw, httpx.Client(timeout=30) as client:
        gw.call(lambda: gw.app.parts.budgets.ready.wait())
        return {
            name: client.post(
                gw.v1 + "/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
            )
            for name, key in keys.items()
            if not name.endswith("_id")
        }


def check(answers: dict[str, httpx.Response]) -> None:
    over = answers["over"]
    assert over.status_code == 429, over.text
    error: dict[str, Any] = over.json()["error"]
    assert (
        error["code"] == "budget_exceeded"
        and "This key is over its max_budget (1 per 1d period)" in (error["message"])
    )
    assert int(over.headers["retry-after"]) >= 1
    assert answers["fresh"].status_code == 200, answers["fresh"].text  # 0.4 today; yesterday's 40 is gone
    alice = answers["alice"]
    assert alice.status_code == 429 and "The user who owns this key is over its max_budget" in alice.text


def test_the_first_request_after_a_restart_is_refused_by_a_spent_budget(
    database_url: str, tmp_path: Path
) -> None:
    check(restart_and_chat(tmp_path, {"CORRAL_DATABASE_URL": database_url}))


@pytest.fixture
def redis_env() -> Iterator[dict[str, str]]:
    import redis

    url = os.environ.get("CORRAL_TEST_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis is required when CI=true: {exc}", pytrace=False)
        pytest.skip(f"Redis not reachable at {url}: {exc}")
    prefix = f"corral-test-{secrets.token_hex(6)}:"
    try:
        yield {"CORRAL_REDIS_URL": url, "CORRAL_REDIS_PREFIX": prefix}
    finally:
        mine = list(client.scan_iter(f"{prefix}*"))
        if mine:
            client.delete(*mine)
        client.close()


@pytest.mark.redis
def test_budgets_are_seeded_into_redis_too(tmp_path: Path, redis_env: dict[str, str]) -> None:
    check(restart_and_chat(tmp_path, redis_env))


def test_spend_left_in_the_spill_file_by_a_crash_counts_after_the_restart(tmp_path: Path) -> None:
    """A crash (or an outage) left today's spend in the spill file, not the table: the first
    seed waits for the writer to replay it."""
    from corral.http.observability import SPILL_FILE
    from corral.usage.spill import SpillFile

    env: dict[str, str] = {}
    with gateway(tmp_path, env) as first:

        async def create() -> tuple[str, str]:
            issued = await first.app.parts.control.store.keys.create(actor="test", name="k", limits=DAILY)
            return issued.key, issued.record.id

        key, key_id = first.call(create)
    spill = SpillFile(tmp_path / SPILL_FILE)
    spill.append([record(1, request_id="spilled-1", key_id=key_id, user=None, at=today(), cost_usd=1.5)])
    spill.close()
    with gateway(tmp_path, env) as gw, httpx.Client(timeout=30) as client:
        gw.call(lambda: gw.app.parts.budgets.ready.wait())
        answer = client.post(
            gw.v1 + "/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 429 and answer.json()["error"]["code"] == "budget_exceeded", answer.text
