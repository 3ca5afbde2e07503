"""Stored gateway keys: only the SHA-256 of each key is kept, with its id, scope and limits.

``create`` generates the key, stores its digest and returns the full key once (``IssuedKey``).
Every write is audited (by key id, never the key) and, once committed, reported to the
listeners (the ``KeyCache``), so a revocation applies to the very next request.
``touch_last_used`` writes a batch of last-use times in one statement, without auditing.
Limits are checked when they are written: numbers must be non-negative (0 refuses every
request), and ``budget_period`` must parse (``corral.limits.windows``); it is stored normalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, cast

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import InvalidRequest
from corral.keys import format as key_format
from corral.limits.windows import parse_period
from corral.store.access import Access, check_optional_text, iso, json_object
from corral.store.audit import write_entry
from corral.store.errors import Missing
from corral.store.tables import gateway_keys

KIND = "gateway key"
Scope = Literal["admin", "user"]
SCOPES: tuple[Scope, ...] = ("admin", "user")
LIMITS = {"rpm": int, "tpm": int, "max_parallel": int, "max_budget": float, "budget_period": str}
EDITABLE = ("name", "owner", "scope", "models", "expires_at", "enabled", "tier", "metadata", "limits")
Listener = Callable[[str, "KeyRecord | None"], None]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One gateway key as the gateway sees it. Immutable; ``key_hash`` is kept out of repr."""

    id: str
    key_hash: bytes = field(repr=False)
    name: str | None
    owner: str | None
    scope: Scope
    models: tuple[str, ...] | None  # None = every model
    expires_at: datetime | None
    enabled: bool
    tier: str | None
    metadata: Mapping[str, Any]
    limits: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None

    def view(self) -> dict[str, Any]:
        """The admin view: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "scope": self.scope,
            "models": None if self.models is None else list(self.models),
            "expires_at": iso(self.expires_at),
            "enabled": self.enabled,
            "tier": self.tier,
            "metadata": dict(self.metadata),
            "limits": dict(self.limits),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key: the record, and the full key to show once (never in repr)."""

    record: KeyRecord
    key: str = field(repr=False)


def _record(row: Mapping[Any, Any]) -> KeyRecord:
    models = row["models"]
    return KeyRecord(
        id=row["id"],
        key_hash=bytes(row["key_hash"]),
        name=row["name"],
        owner=row["owner"],
        scope=cast(Scope, row["scope"]),
        models=None if models is None else tuple(models),
        expires_at=row["expires_at"],
        enabled=bool(row["enabled"]),
        tier=row["tier"],
        metadata=MappingProxyType(dict(row["metadata"] or {})),
        limits=MappingProxyType(dict(row["limits"] or {})),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_used_at=row.get("last_used_at"),
    )


def _limits(value: object) -> dict[str, Any]:
    limits = json_object("limits", value or {})
    for name, limit in limits.items():
        kind = LIMITS.get(name)
        if kind is None:
            raise InvalidRequest(
                f"Unknown limit '{name}'. Known limits: {', '.join(LIMITS)}.", param=f"limits.{name}"
            )
        if limit is None:
            continue
        if kind is str:
            ok = isinstance(limit, str) and 0 < len(limit) <= 32
        else:
            number_ok = isinstance(limit, int | float) and not isinstance(limit, bool)
            ok = (
                number_ok
                and math.isfinite(limit)
                and limit >= 0
                and (kind is float or float(limit).is_integer())
            )
        if not ok:
            expected = (
                "a short string"
                if kind is str
                else f"a non-negative {'number' if kind is float else 'integer'}"
            )
            raise InvalidRequest(f"Limit '{name}' must be {expected}, or null.", param=f"limits.{name}")
    if limits.get("budget_period") is not None:  # refused here, naming the accepted forms, not per request
        limits["budget_period"] = parse_period(limits["budget_period"]).text  # stored as "7d", "monthly"
    return {k: v for k, v in limits.items() if v is not None}


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the editable fields present in ``values``; return them as column values."""
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InvalidRequest(
            f"Unknown key field(s): {', '.join(unknown)}. Editable: {', '.join(EDITABLE)}.", param=unknown[0]
        )
    out: dict[str, Any] = {}
    for name in ("name", "owner"):
        if name in values:
            out[name] = check_optional_text(name, values[name], 256)
    if "tier" in values:
        out["tier"] = check_optional_text("tier", values["tier"], 64)
    if "scope" in values:
        if values["scope"] not in SCOPES:
            raise InvalidRequest("'scope' must be 'admin' or 'user'.", param="scope")
        out["scope"] = values["scope"]
    if "models" in values:
        models = values["models"]
        if models is not None and (
            not isinstance(models, list | tuple) or not all(isinstance(m, str) and m for m in models)
        ):
            raise InvalidRequest(
                "'models' must be a list of model names, or null for every model.", param="models"
            )
        out["models"] = None if models is None else sorted(set(models))
    if "expires_at" in values:
        expires = values["expires_at"]
        if expires is not None and (not isinstance(expires, datetime) or expires.tzinfo is None):
            raise InvalidRequest(
                "'expires_at' must be a timezone-aware datetime, or null.", param="expires_at"
            )
        out["expires_at"] = expires
    if "enabled" in values:
        if not isinstance(values["enabled"], bool):
            raise InvalidRequest("'enabled' must be true or false.", param="enabled")
        out["enabled"] = values["enabled"]
    if "metadata" in values:
        out["metadata"] = json_object("metadata", values["metadata"] or {})
    if "limits" in values:
        out["limits"] = _limits(values["limits"])
    return out


class KeyRepo:
    def __init__(self, access: Access) -> None:
        self._db = access
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(key_id, record_or_None)`` after every committed change."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, key_id: str, record: KeyRecord | None) -> None:
        for listener in self._listeners:
            listener(key_id, record)

    async def list(self, *, owner: str | None = None) -> list[KeyRecord]:
        query = select(gateway_keys).order_by(gateway_keys.c.created_at, gateway_keys.c.id)
        if owner is not None:
            query = query.where(gateway_keys.c.owner == owner)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    async def get_by_id(self, key_id: str) -> KeyRecord:
        async with self._db.read() as conn:
            return await self._get(conn, key_id)

    async def _get(self, conn: AsyncConnection, key_id: str, *, lock: bool = False) -> KeyRecord:
        query = select(gateway_keys).where(gateway_keys.c.id == key_id)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise Missing(KIND, key_id)
        return _record(row)

    async def create(self, *, actor: str, scope: Scope = "user", **fields: Any) -> IssuedKey:
        """Issue a key. ``fields`` are any of name, owner, models, expires_at, enabled, tier,
        metadata, limits. Returns the record and the full key, which is not stored anywhere."""
        values = {"enabled": True, "metadata": {}, "limits": {}, "models": None}
        values.update(_fields({**fields, "scope": scope}))
        for _attempt in range(3):  # a random 8-character id collides about never; retry anyway
            key_id, full_key = key_format.generate()
            now = self._db.now()
            row = {
                "id": key_id,
                "key_hash": key_format.digest(full_key),
                "name": None,
                "owner": None,
                "tier": None,
                "expires_at": None,
                **values,
                "created_at": now,
                "updated_at": now,
                "last_used_at": None,
            }
            record = _record(row)
            try:
                async with self._db.write() as conn:
                    await conn.execute(insert(gateway_keys).values(**row))
                    await write_entry(
                        conn,
                        at=now,
                        actor=actor,
                        action="key.create",
                        target=key_id,
                        before=None,
                        after=record.view(),
                    )
            except IntegrityError:
                continue
            self._notify(key_id, record)
            return IssuedKey(record, full_key)
        raise RuntimeError("could not allocate a unique gateway key id after 3 attempts")

    async def update(self, key_id: str, changes: Mapping[str, Any], *, actor: str) -> KeyRecord:
        """PATCH: a field absent from ``changes`` is kept; ``None`` clears it (models: every model)."""
        values = _fields(changes)  # scope and enabled refuse null there
        async with self._db.write() as conn:
            before = await self._get(conn, key_id, lock=True)
            values["updated_at"] = self._db.now()
            await conn.execute(update(gateway_keys).where(gateway_keys.c.id == key_id).values(**values))
            after = await self._get(conn, key_id)
            await write_entry(
                conn,
                at=values["updated_at"],
                actor=actor,
                action="key.update",
                target=key_id,
                before=before.view(),
                after=after.view(),
            )
        self._notify(key_id, after)
        return after

    async def delete(self, key_id: str, *, actor: str) -> None:
        async with self._db.write() as conn:
            before = await self._get(conn, key_id, lock=True)
            await conn.execute(delete(gateway_keys).where(gateway_keys.c.id == key_id))
            await write_entry(
                conn,
                at=self._db.now(),
                actor=actor,
                action="key.delete",
                target=key_id,
                before=before.view(),
                after=None,
            )
        self._notify(key_id, None)

    async def touch_last_used(self, used: Mapping[str, datetime]) -> None:
        """Record last-use times for many keys in one statement; never moves a time backwards."""
        if not used:
            return
        stmt = (
            update(gateway_keys)
            .where(gateway_keys.c.id == bindparam("key_id"))
            .where(
                or_(gateway_keys.c.last_used_at.is_(None), gateway_keys.c.last_used_at < bindparam("used_at"))
            )
            .values(last_used_at=bindparam("used_at"))
        )
        params = [{"key_id": key_id, "used_at": at} for key_id, at in sorted(used.items())]
        async with self._db.write() as conn:
            await conn.execute(stmt, params)
