"""Routing rule repository: create, list in order, delete, audit (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from corral.errors import NotFound
from corral.store import Store


async def test_create_list_delete_and_audit(store: Store) -> None:
    gold = await store.rules.create(
        level="precision", tier="gold", model="big", priority=0, weight=2.5, actor="master"
    )
    everyone = await store.rules.create(
        level="precision", tier="all", model="small", priority=1, weight=1.0, actor="master"
    )
    assert [r.id for r in await store.rules.list()] == [gold.id, everyone.id]
    assert gold.spec() == {"level": "precision", "tier": "gold", "model": "big", "priority": 0, "weight": 2.5}
    assert (await store.rules.list())[0] == gold
    assert await store.rules.delete(gold.id, actor="master") == gold
    assert [r.id for r in await store.rules.list()] == [everyone.id]
    with pytest.raises(NotFound, match="no rule named"):
        await store.rules.delete(gold.id, actor="master")
    entries = await store.audit.list(target=gold.id)
    assert [e.action for e in entries] == ["rule.delete", "rule.create"]
