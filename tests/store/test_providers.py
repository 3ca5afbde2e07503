"""Provider repository: CRUD, PATCH semantics, secrets encrypted, audit in the same transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest

from corral.errors import InvalidRequest, NotFound
from corral.security.crypto import Crypto, DecryptError, generate_key
from corral.store import Store, open_store
from corral.store.errors import AlreadyExists

API_KEY = "c19094f3b6e84cbdb1e2a0d1f5a9e7c2.S3cr3tTa1lo8ub"
HEADER_SECRET = "hdr-s3cret-value-42"


def cloud(**extra: Any) -> dict[str, Any]:
    return {
        "name": "cloud",
        "type": "ollama",
        "base_url": "https://ollama.com",
        "api_key": API_KEY,
        "headers": {"X-Org-Token": HEADER_SECRET},
        "priority": 2,
        "models": ["gpt-oss:120b"],
        "options": {"temperature": 0.2},
        **extra,
    }


async def test_create_get_list_and_reveal(store: Store) -> None:
    created = await store.providers.create(cloud(), actor="master")
    assert created.api_key_preview == "c19094f...o8ub"
    assert created.settings == {"priority": 2, "models": ["gpt-oss:120b"], "options": {"temperature": 0.2}}
    assert created.created_at.tzinfo is not None
    fetched = await store.providers.get("cloud")
    assert fetched == created
    assert [p.name for p in await store.providers.list()] == ["cloud"]
    revealed = store.providers.reveal(fetched)
    assert revealed["api_key"] == API_KEY
    assert revealed["headers"] == {"X-Org-Token": HEADER_SECRET}
    assert revealed["priority"] == 2 and revealed["base_url"] == "https://ollama.com"
    assert API_KEY not in repr(fetched) and "v1:" not in repr(fetched)


async def test_view_is_redacted(store: Store) -> None:
    record = await store.providers.create(cloud(), actor="master")
    view = store.providers.view(record)
    assert view["header_names"] == ["X-Org-Token"]
    assert view["has_api_key"] is True
    dumped = json.dumps(view)
    assert API_KEY not in dumped and HEADER_SECRET not in dumped


async def test_provider_without_secrets(store: Store) -> None:
    record = await store.providers.create(
        {"name": "local", "type": "ollama", "base_url": "http://h"}, actor="m"
    )
    assert record.api_key_enc is None and record.headers_enc is None and record.api_key_preview is None
    assert store.providers.reveal(record)["api_key"] is None
    assert store.providers.reveal(record)["headers"] == {}


async def test_duplicate_name_is_409(store: Store) -> None:
    await store.providers.create(cloud(), actor="master")
    with pytest.raises(AlreadyExists) as info:
        await store.providers.create(cloud(), actor="master")
    assert info.value.http_status == 409
    assert isinstance(info.value, InvalidRequest)
    assert "cloud" in info.value.message and "already exists" in info.value.message
    assert len(await store.providers.list()) == 1


async def test_patch_keeps_absent_fields_and_clears_nulls(store: Store) -> None:
    await store.providers.create(cloud(), actor="master")
    updated = await store.providers.update(
        "cloud", {"priority": None, "weight": 2.5, "base_url": "https://other"}, actor="master"
    )
    assert updated.settings == {"models": ["gpt-oss:120b"], "options": {"temperature": 0.2}, "weight": 2.5}
    assert updated.base_url == "https://other"
    assert store.providers.api_key(updated) == API_KEY  # untouched
    assert updated.updated_at >= updated.created_at
    cleared = await store.providers.update("cloud", {"api_key": None, "headers": None}, actor="master")
    assert cleared.api_key_enc is None and cleared.api_key_preview is None and cleared.headers_enc is None
    replaced = await store.providers.update("cloud", {"api_key": "short-key-12"}, actor="master")
    assert store.providers.api_key(replaced) == "short-key-12"
    assert replaced.api_key_preview == "...12"
    assert await store.providers.get("cloud") == replaced


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"name": "renamed"}, "cannot be renamed"),
        ({"type": None}, "'type' is required"),
        ({"base_url": ""}, "'base_url' is required"),
        ({"api_key": 42}, "'api_key' must be"),
        ({"headers": {"X": 1}}, "'headers' must be"),
        ({"options": {"bad": object()}}, "JSON values"),
        ({"api_key_preview": "x"}, "not a provider field"),
        ({"created_at": None}, "not a provider field"),
    ],
)
async def test_invalid_patches_change_nothing(store: Store, changes: dict[str, Any], match: str) -> None:
    before = await store.providers.create(cloud(), actor="master")
    with pytest.raises(InvalidRequest, match=match):
        await store.providers.update("cloud", changes, actor="master")
    assert await store.providers.get("cloud") == before


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"name": "", "type": "ollama", "base_url": "http://h"}, "non-empty"),
        ({"name": "x" * 129, "type": "ollama", "base_url": "http://h"}, "longer than 128"),
        ({"name": " x", "type": "ollama", "base_url": "http://h"}, "spaces"),
        ({"name": "x", "base_url": "http://h"}, "'type' is required"),
        ({"name": "x", "type": "ollama"}, "'base_url' is required"),
        (
            {"name": "x", "type": "ollama", "base_url": "http://h", "has_api_key": True},
            "not a provider field",
        ),
    ],
)
async def test_invalid_creates(store: Store, data: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        await store.providers.create(data, actor="master")
    assert await store.providers.list() == []


async def test_missing_provider_is_404(store: Store) -> None:
    for call in (
        store.providers.get("nope"),
        store.providers.update("nope", {"priority": 1}, actor="m"),
        store.providers.delete("nope", actor="m"),
    ):
        with pytest.raises(NotFound, match="no provider named 'nope'"):
            await call


async def test_delete(store: Store) -> None:
    await store.providers.create(cloud(), actor="master")
    await store.providers.delete("cloud", actor="master")
    assert await store.providers.list() == []
    await store.providers.create(cloud(), actor="master")  # the name is free again


async def test_audit_rows_are_written_and_redacted(store: Store) -> None:
    await store.providers.create(cloud(), actor="master")
    await store.providers.update(
        "cloud", {"api_key": "another-very-secret-key-0000", "priority": 5}, actor="k1"
    )
    await store.providers.delete("cloud", actor="k2")
    entries = await store.audit.list()
    assert [(e.action, e.actor, e.target) for e in entries] == [
        ("provider.delete", "k2", "cloud"),
        ("provider.update", "k1", "cloud"),
        ("provider.create", "master", "cloud"),
    ]
    delete, update, create = entries
    assert create.before is None and create.after is not None
    assert create.after["priority"] == 2 and create.after["header_names"] == ["X-Org-Token"]
    assert update.before is not None and update.after is not None
    assert update.before["priority"] == 2 and update.after["priority"] == 5
    assert update.after["api_key_preview"] == "another...0000"
    assert delete.after is None and delete.before is not None
    dumped = json.dumps([e.view() for e in entries])
    for secret in (API_KEY, HEADER_SECRET, "another-very-secret-key-0000", "v1:"):
        assert secret not in dumped


async def test_write_and_audit_share_one_transaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import corral.store.providers as module

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit write failed")

    await store.providers.create(cloud(), actor="master")
    monkeypatch.setattr(module, "write_entry", broken)
    with pytest.raises(RuntimeError):
        await store.providers.create(cloud(name="second"), actor="master")
    with pytest.raises(RuntimeError):
        await store.providers.update("cloud", {"priority": 9}, actor="master")
    with pytest.raises(RuntimeError):
        await store.providers.delete("cloud", actor="master")
    assert [p.name for p in await store.providers.list()] == ["cloud"]
    assert (await store.providers.get("cloud")).settings["priority"] == 2


async def test_a_wrong_key_fails_closed_naming_the_provider(database_url: str, store: Store) -> None:
    await store.providers.create(cloud(), actor="master")
    other = await open_store(database_url, crypto=Crypto([generate_key()]))
    try:
        record = await other.providers.get("cloud")
        with pytest.raises(DecryptError, match="the api_key of provider 'cloud'"):
            other.providers.api_key(record)
        with pytest.raises(DecryptError, match="the headers of provider 'cloud'"):
            other.providers.headers(record)
        with pytest.raises(DecryptError):
            await other.providers.check_decryptable()
        # an unreadable value can still be replaced (the fix after a lost key)
        fixed = await other.providers.update("cloud", {"api_key": "new-key", "headers": None}, actor="m")
        assert other.providers.api_key(fixed) == "new-key"
        assert await other.providers.check_decryptable() == 1
    finally:
        await other.close()
