"""Alias repository: CRUD, PATCH on the spec, conflicts, audit."""

from __future__ import annotations

import pytest

from corral.errors import InvalidRequest, NotFound
from corral.store import Store
from corral.store.errors import AlreadyExists

SPEC = {"targets": ["local/llama3", "cloud/llama3"], "strategy": "priority", "num_ctx": 8192}


async def test_create_get_list(store: Store) -> None:
    created = await store.aliases.create("fast", SPEC, actor="master")
    assert created.spec == SPEC
    assert await store.aliases.get("fast") == created
    await store.aliases.create("big", {"targets": ["cloud/gpt-oss:120b"]}, actor="master")
    assert [a.name for a in await store.aliases.list()] == ["big", "fast"]
    assert created.view()["targets"] == SPEC["targets"]


async def test_conflict_and_missing(store: Store) -> None:
    await store.aliases.create("fast", SPEC, actor="master")
    with pytest.raises(AlreadyExists) as info:
        await store.aliases.create("fast", SPEC, actor="master")
    assert info.value.http_status == 409 and info.value.code == "alias_exists"
    with pytest.raises(NotFound, match="no alias named 'slow'"):
        await store.aliases.get("slow")
    with pytest.raises(NotFound):
        await store.aliases.update("slow", {"num_ctx": 1}, actor="m")
    with pytest.raises(NotFound):
        await store.aliases.delete("slow", actor="m")


async def test_patch(store: Store) -> None:
    await store.aliases.create("fast", SPEC, actor="master")
    updated = await store.aliases.update(
        "fast", {"num_ctx": None, "explicit_only": True, "fallbacks": ["big"]}, actor="master"
    )
    assert updated.spec == {
        "targets": SPEC["targets"],
        "strategy": "priority",
        "explicit_only": True,
        "fallbacks": ["big"],
    }
    assert await store.aliases.get("fast") == updated
    with pytest.raises(InvalidRequest, match="cannot be renamed"):
        await store.aliases.update("fast", {"name": "quick"}, actor="m")
    with pytest.raises(InvalidRequest, match="JSON"):
        await store.aliases.update("fast", {"targets": {1, 2}}, actor="m")
    assert await store.aliases.get("fast") == updated


async def test_delete_and_audit(store: Store) -> None:
    await store.aliases.create("fast", SPEC, actor="master")
    await store.aliases.update("fast", {"strategy": "least_busy"}, actor="abc12345")
    await store.aliases.delete("fast", actor="master")
    assert await store.aliases.list() == []
    entries = await store.audit.list(target="fast")
    assert [e.action for e in entries] == ["alias.delete", "alias.update", "alias.create"]
    assert entries[1].actor == "abc12345"
    assert entries[1].before is not None and entries[1].before["strategy"] == "priority"
    assert entries[1].after is not None and entries[1].after["strategy"] == "least_busy"
