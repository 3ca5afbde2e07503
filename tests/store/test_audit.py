"""Audit log: listing with limit/offset/since/filters, and redaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from corral.errors import InvalidRequest
from corral.security.crypto import Crypto
from corral.store import open_store
from corral.store.audit import REDACTED, redact


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


async def test_list_pages_and_filters(database_url: str, crypto: Crypto) -> None:
    clock = Clock()
    store = await open_store(database_url, crypto=crypto, clock=clock)
    try:
        for i in range(5):
            await store.audit.record(actor="master", action="test.event", target=f"t{i}", after={"i": i})
        await store.audit.record(actor="k1", action="other.event", target="t9")
        everything = await store.audit.list()
        assert [e.target for e in everything] == ["t9", "t4", "t3", "t2", "t1", "t0"]
        assert [e.target for e in await store.audit.list(limit=2, offset=1)] == ["t4", "t3"]
        assert [e.target for e in await store.audit.list(action="other.event")] == ["t9"]
        assert [e.target for e in await store.audit.list(target="t2")] == ["t2"]
        since = everything[2].at  # t3
        assert [e.target for e in await store.audit.list(since=since)] == ["t9", "t4", "t3"]
        assert everything[0].at.tzinfo is not None
        assert everything[1].view()["after"] == {"i": 4}
        assert everything[1].view()["at"] == "2030-01-01T00:05:00+00:00"
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"since": datetime(2030, 1, 1)}):
            with pytest.raises(InvalidRequest):
                await store.audit.list(**bad)  # type: ignore[arg-type]
    finally:
        await store.close()


async def test_record_redacts_secret_looking_fields(database_url: str, crypto: Crypto) -> None:
    store = await open_store(database_url, crypto=crypto)
    try:
        await store.audit.record(
            actor="master",
            action="x.y",
            target="z",
            before={"api_key": "sk-live-123", "nested": [{"password": "pw", "ok": 1}]},
            after={"Authorization": "Bearer abc", "max_tokens": 5, "x-api-key": "k"},
        )
        (entry,) = await store.audit.list()
        assert entry.before == {"api_key": REDACTED, "nested": [{"password": REDACTED, "ok": 1}]}
        assert entry.after == {"Authorization": REDACTED, "max_tokens": 5, "x-api-key": REDACTED}
    finally:
        await store.close()


def test_redact() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert redact({"master_key": "m", "key_hash": b"h", "models": ("a",), "at": when, "token": None}) == {
        "master_key": REDACTED,
        "key_hash": REDACTED,
        "models": ["a"],
        "at": when.isoformat(),
        "token": None,
    }
    assert redact({"api_key_preview": "c19094f...o8ub", "has_api_key": True, "blob": b"x"}) == {
        "api_key_preview": "c19094f...o8ub",
        "has_api_key": True,
        "blob": REDACTED,
    }
