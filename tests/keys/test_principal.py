"""The calling principal built from the master key or a gateway key."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from corral.keys.principal import Principal
from corral.store.keys import KeyRecord


def test_master() -> None:
    master = Principal.master()
    assert master.is_master and master.is_admin and master.may_use("anything")


def test_from_key() -> None:
    now = datetime.now(UTC)
    record = KeyRecord(
        id="abcdEF12",
        key_hash=b"\0" * 32,
        name="ci",
        owner="alice",
        scope="user",
        models=("llama3",),
        expires_at=None,
        enabled=True,
        tier="gold",
        metadata=MappingProxyType({"team": "x"}),
        limits=MappingProxyType({"rpm": 5}),
        created_at=now,
        updated_at=now,
    )
    principal = Principal.from_key(record)
    assert principal.key_id == "abcdEF12" and not principal.is_admin and not principal.is_master
    assert principal.may_use("llama3") and not principal.may_use("gpt-4")
    assert principal.limits["rpm"] == 5 and principal.owner == "alice" and principal.tier == "gold"
