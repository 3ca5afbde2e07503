"""Gateway key repository: only hashes stored, PATCH, listeners, last-use batching, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from corral.errors import InvalidRequest, NotFound
from corral.keys import format as key_format
from corral.store import Store
from corral.store.keys import KeyRecord
from corral.store.tables import gateway_keys


async def test_create_returns_the_key_once_and_stores_its_hash(store: Store) -> None:
    issued = await store.keys.create(
        actor="master", name="ci", owner="alice", models=["llama3", "llama3"], limits={"rpm": 60}
    )
    record = issued.record
    assert key_format.parse(issued.key) == (record.id, issued.key[12:-6])
    assert record.key_hash == key_format.digest(issued.key)
    assert record.models == ("llama3",) and record.scope == "user" and record.enabled
    assert dict(record.limits) == {"rpm": 60}
    assert issued.key not in repr(issued) and "key_hash" not in repr(record)
    assert await store.keys.get_by_id(record.id) == record
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(gateway_keys))).mappings().all()
    assert len(rows) == 1
    assert issued.key not in str(dict(rows[0])) and issued.key[12:-6] not in str(dict(rows[0]))


async def test_list_and_owner_filter(store: Store) -> None:
    a = await store.keys.create(actor="m", owner="alice")
    b = await store.keys.create(actor="m", owner="bob", scope="admin")
    assert {k.id for k in await store.keys.list()} == {a.record.id, b.record.id}
    assert [k.id for k in await store.keys.list(owner="bob")] == [b.record.id]


async def test_patch(store: Store) -> None:
    issued = await store.keys.create(actor="m", name="x", tier="gold", models=["a"], metadata={"team": "t"})
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    updated = await store.keys.update(
        issued.record.id, {"models": None, "expires_at": expiry, "enabled": False, "tier": None}, actor="m"
    )
    assert updated.models is None and updated.expires_at == expiry and not updated.enabled
    assert updated.tier is None and updated.name == "x" and dict(updated.metadata) == {"team": "t"}
    assert updated.key_hash == issued.record.key_hash
    assert await store.keys.get_by_id(issued.record.id) == updated


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"scope": "root"}, "'scope' must be"),
        ({"scope": None}, "'scope' must be"),
        ({"enabled": None}, "'enabled' must be"),
        ({"enabled": "yes"}, "'enabled' must be"),
        ({"models": "llama3"}, "'models' must be"),
        ({"models": [""]}, "'models' must be"),
        ({"expires_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"limits": {"rpx": 1}}, "Unknown limit 'rpx'"),
        ({"limits": {"rpm": -1}}, "non-negative integer"),
        ({"limits": {"rpm": 1.5}}, "non-negative integer"),
        ({"limits": {"rpm": True}}, "non-negative integer"),
        ({"limits": {"max_budget": float("inf")}}, "JSON values"),
        ({"limits": {"budget_period": 30}}, "short string"),
        ({"limits": {"budget_period": "fortnight"}}, "Unknown budget_period 'fortnight'.*1d, 7d"),
        ({"limits": {"budget_period": "0d"}}, "Unknown budget_period '0d'"),
        ({"limits": {"max_budget": 5, "budget_period": "1y"}}, "Unknown budget_period"),
        ({"limits": {"max_budget": -0.5}}, "non-negative number"),
        ({"key_hash": b"x"}, "Unknown key field"),
        ({"id": "other"}, "Unknown key field"),
        ({"name": "x" * 300}, "at most 256"),
    ],
)
async def test_invalid_changes(store: Store, changes: dict[str, object], match: str) -> None:
    issued = await store.keys.create(actor="m")
    with pytest.raises(InvalidRequest, match=match):
        await store.keys.update(issued.record.id, changes, actor="m")
    assert await store.keys.get_by_id(issued.record.id) == issued.record


async def test_limits_accept_every_known_limit(store: Store) -> None:
    limits = {"rpm": 60, "tpm": 100_000, "max_parallel": 4, "max_budget": 12.5, "budget_period": "30d"}
    issued = await store.keys.create(actor="m", limits=limits)
    assert dict((await store.keys.get_by_id(issued.record.id)).limits) == limits


async def test_a_bad_budget_period_is_refused_at_create_and_nothing_is_stored(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="Unknown budget_period 'fortnight'") as info:
        await store.keys.create(actor="m", limits={"max_budget": 10, "budget_period": "fortnight"})
    assert info.value.param == "limits.budget_period"
    assert await store.keys.list() == []


async def test_budget_period_is_stored_normalised(store: Store) -> None:
    issued = await store.keys.create(actor="m", limits={"max_budget": 1, "budget_period": " Monthly "})
    assert (await store.keys.get_by_id(issued.record.id)).limits["budget_period"] == "monthly"
    updated = await store.keys.update(issued.record.id, {"limits": {"budget_period": "7D"}}, actor="m")
    assert dict(updated.limits) == {"budget_period": "7d"}


async def test_delete_and_missing(store: Store) -> None:
    issued = await store.keys.create(actor="m")
    await store.keys.delete(issued.record.id, actor="m")
    with pytest.raises(NotFound, match="no gateway key named"):
        await store.keys.get_by_id(issued.record.id)
    with pytest.raises(NotFound):
        await store.keys.delete(issued.record.id, actor="m")
    with pytest.raises(NotFound):
        await store.keys.update(issued.record.id, {"enabled": False}, actor="m")


async def test_listeners_hear_every_committed_change(store: Store) -> None:
    heard: list[tuple[str, KeyRecord | None]] = []
    store.keys.subscribe(lambda key_id, record: heard.append((key_id, record)))
    issued = await store.keys.create(actor="m")
    key_id = issued.record.id
    updated = await store.keys.update(key_id, {"enabled": False}, actor="m")
    await store.keys.delete(key_id, actor="m")
    with pytest.raises(InvalidRequest):
        await store.keys.update("missing1", {"enabled": 3}, actor="m")
    assert heard == [(key_id, issued.record), (key_id, updated), (key_id, None)]


async def test_touch_last_used_is_batched_and_monotonic(store: Store) -> None:
    a = (await store.keys.create(actor="m")).record.id
    b = (await store.keys.create(actor="m")).record.id
    t1 = datetime(2030, 1, 1, tzinfo=UTC)
    await store.keys.touch_last_used({a: t1, b: t1, "unknown1": t1})
    await store.keys.touch_last_used({a: t1 - timedelta(hours=1), b: t1 + timedelta(hours=1)})
    await store.keys.touch_last_used({})
    assert (await store.keys.get_by_id(a)).last_used_at == t1
    assert (await store.keys.get_by_id(b)).last_used_at == t1 + timedelta(hours=1)
    assert [e.action for e in await store.audit.list()] == ["key.create", "key.create"]  # not audited


async def test_audit_names_the_key_id_never_the_key(store: Store) -> None:
    issued = await store.keys.create(actor="master", name="ci")
    await store.keys.update(issued.record.id, {"scope": "admin"}, actor="master")
    await store.keys.delete(issued.record.id, actor="master")
    entries = await store.audit.list()
    assert {e.target for e in entries} == {issued.record.id}
    assert [e.action for e in entries] == ["key.delete", "key.update", "key.create"]
    assert entries[1].after is not None and entries[1].after["scope"] == "admin"
    dumped = json.dumps([e.view() for e in entries])
    assert issued.key not in dumped and issued.record.key_hash.hex() not in dumped
