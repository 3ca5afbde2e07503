"""The catalog repository: CRUD with PATCH semantics, validation, bulk upsert, audit entries."""

from __future__ import annotations

import pytest

from corral.errors import InvalidRequest
from corral.store import Store
from corral.store.errors import AlreadyExists, Missing


async def test_create_read_patch_delete(store: Store) -> None:
    repo = store.catalog
    created = await repo.create(
        "cloud",
        "gpt-oss:120b",
        {"input_price": 0.15, "output_price": 0.6, "display_name": "GPT-OSS"},
        actor="k1",
    )
    assert created.enabled is True and created.capabilities is None
    with pytest.raises(AlreadyExists):
        await repo.create("cloud", "gpt-oss:120b", {}, actor="k1")
    patched = await repo.update(
        "cloud", "gpt-oss:120b", {"notes": "eu only", "input_price": None}, actor="k2"
    )
    assert patched.notes == "eu only" and patched.input_price is None and patched.output_price == 0.6
    assert patched.display_name == "GPT-OSS"  # kept
    assert [r.model for r in await repo.list("cloud")] == ["gpt-oss:120b"]
    assert await repo.list("other") == []
    await repo.delete("cloud", "gpt-oss:120b", actor="k3")
    with pytest.raises(Missing):
        await repo.get("cloud", "gpt-oss:120b")
    actions = [(e.action, e.actor, e.target) for e in await store.audit.list(limit=10)]
    assert actions[:3] == [
        ("catalog.delete", "k3", "cloud/gpt-oss:120b"),
        ("catalog.update", "k2", "cloud/gpt-oss:120b"),
        ("catalog.create", "k1", "cloud/gpt-oss:120b"),
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input_price": -1}, "input_price"),
        ({"output_price": float("inf")}, "output_price"),
        ({"output_price": True}, "output_price"),
        ({"context_length": 0}, "context_length"),
        ({"capabilities": "tools"}, "capabilities"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_fields_are_400_naming_the_field(
    store: Store, fields: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await store.catalog.create("p", "m", fields, actor="k")
    assert refused.value.param == param


async def test_upsert_many_keeps_what_it_is_not_given(store: Store) -> None:
    repo = store.catalog
    await repo.create("p", "a", {"input_price": 1.0, "output_price": 2.0, "context_length": 1}, actor="k")
    count = await repo.upsert_many(
        "p", [("a", {"context_length": 4096}), ("b", {"capabilities": ["completion"]})], actor="import"
    )
    assert count == 2
    a, b = await repo.list("p")
    assert (a.context_length, a.input_price, a.output_price) == (4096, 1.0, 2.0)
    assert b.capabilities == ("completion",) and b.enabled is True and b.input_price is None
    entry = (await store.audit.list(action="catalog.import"))[0]
    assert entry.target == "p" and entry.after == {"created": ["b"], "updated": ["a"]}
