"""KeyCache.verify: in memory, constant-time, fails closed on anything but a valid live key."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import random
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from corral.errors import AuthenticationFailed
from corral.keys import format as key_format
from corral.keys.cache import KeyCache
from corral.security.crypto import Crypto
from corral.store import Store, open_store
from corral.store.keys import KeyRecord


def record(key: str, key_id: str, **extra: Any) -> KeyRecord:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": key_id,
        "key_hash": key_format.digest(key),
        "name": None,
        "owner": None,
        "scope": "user",
        "models": None,
        "expires_at": None,
        "enabled": True,
        "tier": None,
        "metadata": {},
        "limits": {},
        "created_at": now,
        "updated_at": now,
    }
    fields.update(extra)
    return KeyRecord(**fields)


def cache_with_key(**extra: Any) -> tuple[KeyCache, str]:
    key_id, key = key_format.generate()
    cache = KeyCache()
    cache.put(record(key, key_id, **extra))
    return cache, key


def rejected(cache: KeyCache, presented: str, code: str = "invalid_api_key") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        cache.verify(presented, time.time())
    assert info.value.code == code
    assert info.value.http_status == 401
    if len(presented) >= 8:
        assert presented not in info.value.message
    return info.value


def with_checksum(body: str) -> str:
    return body + key_format.checksum(body)


def hostile_inputs(valid: str, count: int = 1000) -> list[str]:
    rng = random.Random(20250101)
    fixed = [
        "",
        " ",
        "' OR '1'='1",
        "gw_' OR '1'='1",
        "'; DROP TABLE gateway_keys; --",
        "gw_abcdefgh_' OR 1=1 -- " + "a" * 10,
        "gw_%' OR id LIKE '%",
        "x" * 100_000,
        "gw_" + "a" * 100_000,
        valid + "\x00",
        "\x00" * 40,
        valid.upper(),
        valid.replace("_", "-"),
        valid[:-1],
        valid + "a",
        " " + valid,
        "gw_\ud800" + valid[4:],
        "gw_abcdéfgh_" + "a" * 28,
        "gw_\u0430bcdefgh_" + "a" * 28,  # Cyrillic a
        "🔑" * 40,
        "Bearer " + valid,
        valid[:12] + "\u202e" + valid[13:],
    ]
    out = [text for text in fixed if text != valid]
    while len(out) < count:
        kind = rng.randrange(6)
        if kind == 0:  # random bytes, as a server would decode a header
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).decode("latin-1"))
        elif kind == 1:  # random unicode
            out.append("".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(rng.randrange(1, 60))))
        elif kind == 2:  # one character of the valid key changed
            i = rng.randrange(len(valid))
            out.append(valid[:i] + rng.choice(key_format.ALPHABET + "_-' ") + valid[i + 1 :])
        elif kind == 3:  # the right id, a wrong secret, a correct checksum: only the hash can tell
            secret = "".join(rng.choice(key_format.ALPHABET) for _ in range(22))
            out.append(with_checksum(valid[:12] + secret))
        elif kind == 4:  # a well-formed key this cache has never seen
            out.append(key_format.generate()[1])
        else:  # long junk
            out.append(rng.choice(["a", "'", "gw_", "%00"]) * rng.randrange(100, 20_000))
        if out[-1] == valid:
            out.pop()
    return out


def test_a_valid_key_verifies() -> None:
    cache, key = cache_with_key(name="ci")
    got = cache.verify(key, time.time())
    assert got.name == "ci"


def test_1000_hostile_inputs_are_all_rejected_cleanly() -> None:
    cache, key = cache_with_key()
    inputs = hostile_inputs(key)
    assert len(inputs) == 1000
    for text in inputs:
        rejected(cache, text)
    cache.verify(key, time.time())  # and the real key still works


def test_expired_and_disabled_keys() -> None:
    now = time.time()
    expires = datetime.fromtimestamp(now + 60, UTC)
    cache, key = cache_with_key(expires_at=expires)
    assert cache.verify(key, now + 59.9).id
    with pytest.raises(AuthenticationFailed) as info:
        cache.verify(key, now + 60.001)  # expires_at is rounded to microseconds: check just past it
    assert info.value.code == "key_expired" and "expired" in info.value.message
    cache, key = cache_with_key(enabled=False)
    assert "disabled" in rejected(cache, key, "key_disabled").message


def test_status_is_revealed_only_to_the_holder_of_the_secret() -> None:
    cache, key = cache_with_key(enabled=False, expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    forged = with_checksum(key[:12] + "A" * 22)
    rejected(cache, forged, "invalid_api_key")  # not key_disabled: the secret is wrong


def test_revocation_applies_to_the_next_verify() -> None:
    cache, key = cache_with_key()
    key_id = key[3:11]
    cache.verify(key, time.time())
    cache.invalidate(key_id)
    rejected(cache, key)
    cache.put(record(key, key_id, enabled=False))
    rejected(cache, key, "key_disabled")
    cache.apply(key_id, record(key, key_id))
    assert cache.verify(key, time.time()).id == key_id
    assert len(cache) == 1 and cache.get(key_id) is not None


def test_compare_digest_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    cache, key = cache_with_key()
    cache.verify(key, time.time())
    assert len(calls) == 1 and calls[0][0] == key_format.digest(key)
    rejected(cache, with_checksum(key[:12] + "B" * 22))  # right id, wrong secret
    rejected(cache, key_format.generate()[1])  # unknown id: compared against a dummy hash
    assert len(calls) == 3
    rejected(cache, "' OR '1'='1")  # malformed: rejected before any lookup
    assert len(calls) == 3


async def test_verify_does_no_io(store: Store) -> None:
    cache = KeyCache()
    issued = await store.keys.create(actor="m")
    await cache.load(store)
    await store.close()  # the database is gone; verification does not notice
    assert cache.verify(issued.key, time.time()).id == issued.record.id


async def test_attached_cache_sees_repo_changes_at_once(store: Store) -> None:
    cache = KeyCache()
    cache.attach(store)
    await cache.load(store)
    assert cache.loaded and len(cache) == 0
    issued = await store.keys.create(actor="m", models=["llama3"])
    assert cache.verify(issued.key, time.time()).models == ("llama3",)
    await store.keys.update(issued.record.id, {"enabled": False}, actor="m")
    rejected(cache, issued.key, "key_disabled")
    await store.keys.update(issued.record.id, {"enabled": True}, actor="m")
    cache.verify(issued.key, time.time())
    await store.keys.delete(issued.record.id, actor="m")
    rejected(cache, issued.key)


async def test_refresh_loop_picks_up_another_replicas_changes(
    database_url: str, crypto: Crypto, store: Store
) -> None:
    other = await open_store(database_url, crypto=crypto)  # a second gateway on the same database
    cache = KeyCache()
    cache.attach(store)
    issued = await store.keys.create(actor="m")
    await cache.load(store)
    cache.verify(issued.key, time.time())
    task = asyncio.create_task(cache.refresh_loop(store, 0.02))
    try:
        await other.keys.update(issued.record.id, {"enabled": False}, actor="m")
        fresh = await other.keys.create(actor="m")
        deadline = time.monotonic() + 5
        while cache.get(fresh.record.id) is None or cache.get(issued.record.id).enabled:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the refresh loop did not pick up the change"
            await asyncio.sleep(0.01)
        rejected(cache, issued.key, "key_disabled")
        cache.verify(fresh.key, time.time())
        last_used = (await other.keys.get_by_id(fresh.record.id)).last_used_at
        while last_used is None:  # the loop also writes last-use times
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
            last_used = (await other.keys.get_by_id(fresh.record.id)).last_used_at
        assert abs(last_used - datetime.now(UTC)) < timedelta(seconds=30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await other.close()


class SlowKeys:
    def __init__(self, records: list[KeyRecord]) -> None:
        self.records = records
        self.release = asyncio.Event()
        self.fail = False
        self.touched: list[dict[str, datetime]] = []

    async def list(self) -> list[KeyRecord]:
        await self.release.wait()
        if self.fail:
            raise OSError("database down")
        return list(self.records)

    async def touch_last_used(self, used: dict[str, datetime]) -> None:
        if self.fail:
            raise OSError("database down")
        self.touched.append(used)


async def test_a_reload_in_flight_does_not_undo_a_revocation() -> None:
    key_id, key = key_format.generate()
    stale = record(key, key_id)
    keys = SlowKeys([stale])  # the database snapshot still has the key
    fake: Any = SimpleNamespace(keys=keys)
    cache = KeyCache()
    cache.put(stale)
    loading = asyncio.create_task(cache.load(fake))
    await asyncio.sleep(0)
    cache.invalidate(key_id)  # revoked here while the reload was reading
    keys.release.set()
    await loading
    rejected(cache, key)


async def test_refresh_failures_keep_the_known_keys(caplog: pytest.LogCaptureFixture) -> None:
    key_id, key = key_format.generate()
    keys = SlowKeys([])
    keys.fail = True
    keys.release.set()
    fake: Any = SimpleNamespace(keys=keys)
    cache = KeyCache()
    cache.put(record(key, key_id))
    cache.verify(key, time.time())
    task = asyncio.create_task(cache.refresh_loop(fake, 0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cache.verify(key, time.time()).id == key_id
    assert "could not refresh gateway keys" in caplog.text and key not in caplog.text
    keys.fail = False
    assert await cache.flush_last_used(fake) == 1  # last-use times were kept for the retry
    assert list(keys.touched[0]) == [key_id]
    assert await cache.flush_last_used(fake) == 0


def test_a_records_principal_is_made_once_and_again_after_a_change() -> None:
    cache, key = cache_with_key(models=["a"])
    first = cache.principal(cache.verify(key, time.time()))
    assert cache.principal(cache.verify(key, time.time())) is first  # no new one per request
    assert first.models == frozenset({"a"})
    old = cache.verify(key, time.time())
    cache.put(dataclasses.replace(old, models=("b",)))  # an admin changed the key's models
    changed = cache.principal(cache.verify(key, time.time()))
    assert changed is not first and changed.models == frozenset({"b"})
