"""Who is calling: the identity and permissions the gateway attaches to an authenticated request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from corral.store.keys import KeyRecord

MASTER = "master"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str  # a gateway key id, or "master"
    scope: Literal["admin", "user"]
    models: frozenset[str] | None = None  # None = every model
    limits: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    owner: str | None = None
    name: str | None = None
    tier: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def master(cls) -> Principal:
        return cls(key_id=MASTER, scope="admin", name="master key")

    @classmethod
    def from_key(cls, record: KeyRecord) -> Principal:
        return cls(
            key_id=record.id,
            scope=record.scope,
            models=None if record.models is None else frozenset(record.models),
            limits=record.limits,
            owner=record.owner,
            name=record.name,
            tier=record.tier,
            metadata=record.metadata,
        )

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"

    @property
    def is_master(self) -> bool:
        return self.key_id == MASTER

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models
