"""The model catalog in the store: one entry per provider and model id, CRUD with PATCH
updates, a bulk upsert for imports, every write audited.

An entry holds what the operator says (``display_name``, ``enabled``, ``input_price`` and
``output_price`` in USD per million tokens, ``notes``) and what an import read from the
provider (``capabilities``, ``context_length``). ``corral.usage.prices`` keeps an in-memory
snapshot of it for the request path; nothing here is read while a request is served.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import InvalidRequest
from corral.store.access import Access, check_name, check_optional_text, iso
from corral.store.audit import write_entry
from corral.store.errors import AlreadyExists, Missing
from corral.store.tables import catalog

KIND = "catalog entry"
FIELDS = (
    "display_name",
    "enabled",
    "input_price",
    "output_price",
    "capabilities",
    "context_length",
    "notes",
)
MAX_NOTES = 4096
MAX_CAPABILITIES = 64
MAX_PRICE = 1_000_000.0  # USD per million tokens: anything above is a typo


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    provider: str
    model: str
    display_name: str | None
    enabled: bool
    input_price: float | None
    output_price: float | None
    capabilities: tuple[str, ...] | None
    context_length: int | None
    notes: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.model)

    def view(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "display_name": self.display_name,
            "enabled": self.enabled,
            "input_price": self.input_price,
            "output_price": self.output_price,
            "capabilities": None if self.capabilities is None else list(self.capabilities),
            "context_length": self.context_length,
            "notes": self.notes,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def _record(row: Mapping[Any, Any]) -> CatalogRecord:
    caps = row["capabilities"]
    return CatalogRecord(
        provider=row["provider"],
        model=row["model"],
        display_name=row["display_name"],
        enabled=bool(row["enabled"]),
        input_price=row["input_price"],
        output_price=row["output_price"],
        capabilities=None if caps is None else tuple(str(c) for c in caps),
        context_length=row["context_length"],
        notes=row["notes"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def check_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog fields of ``data``, validated (400 naming the field); None clears a field."""
    unknown = sorted(set(data) - set(FIELDS) - {"provider", "model"})
    if unknown:
        raise InvalidRequest(
            f"'{unknown[0]}' is not a catalog field; use {', '.join(FIELDS)}.", param=unknown[0]
        )
    out: dict[str, Any] = {}
    for key in FIELDS:
        if key not in data:
            continue
        value = data[key]
        if key == "display_name":
            out[key] = check_optional_text(key, value, 256)
        elif key == "notes":
            out[key] = check_optional_text(key, value, MAX_NOTES)
        elif key == "enabled":
            if not isinstance(value, bool):
                raise InvalidRequest("'enabled' must be true or false.", param=key)
            out[key] = value
        elif key in ("input_price", "output_price"):
            out[key] = _price(key, value)
        elif key == "context_length":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidRequest(
                    "'context_length' must be a whole number of tokens, 1 or more.", param=key
                )
            out[key] = value
        else:
            out[key] = _capabilities(value)
    return out


def _price(key: str, value: object) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_PRICE
    ):
        raise InvalidRequest(
            f"'{key}' must be USD per million tokens, between 0 and {MAX_PRICE:g} (or null for no price).",
            param=key,
        )
    return float(value)


def _capabilities(value: object) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_CAPABILITIES
        or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
    ):
        raise InvalidRequest(
            '\'capabilities\' must be a list of short strings, e.g. ["completion", "tools"].',
            param="capabilities",
        )
    return list(dict.fromkeys(value))


class CatalogRepo:
    def __init__(self, access: Access) -> None:
        self._db = access

    async def list(self, provider: str | None = None) -> list[CatalogRecord]:
        query = select(catalog).order_by(catalog.c.provider, catalog.c.model)
        if provider is not None:
            query = query.where(catalog.c.provider == provider)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    async def get(self, provider: str, model: str) -> CatalogRecord:
        async with self._db.read() as conn:
            return await self._get(conn, provider, model)

    async def _get(
        self, conn: AsyncConnection, provider: str, model: str, *, lock: bool = False
    ) -> CatalogRecord:
        query = select(catalog).where(and_(catalog.c.provider == provider, catalog.c.model == model))
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise Missing(KIND, f"{provider}/{model}")
        return _record(row)

    async def create(
        self, provider: str, model: str, data: Mapping[str, Any], *, actor: str
    ) -> CatalogRecord:
        values = self._new(provider, model, check_fields(data))
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(catalog).values(**values))
                record = _record(values)
                await self._audit(conn, actor, "catalog.create", record, None, record.view())
        except IntegrityError:
            raise AlreadyExists(KIND, f"{provider}/{model}") from None
        return record

    def _new(self, provider: str, model: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        check_name("provider", provider, 128)
        check_name("model", model, 256)
        now = self._db.now()
        values: dict[str, Any] = dict.fromkeys(FIELDS)
        values.update(enabled=True)
        values.update(fields)
        values.update(provider=provider, model=model, created_at=now, updated_at=now)
        return values

    async def update(
        self, provider: str, model: str, changes: Mapping[str, Any], *, actor: str
    ) -> CatalogRecord:
        """PATCH: a field absent from ``changes`` is kept, None clears it."""
        for key in ("provider", "model"):
            if key in changes and changes[key] != {"provider": provider, "model": model}[key]:
                raise InvalidRequest(
                    f"A catalog entry's {key} cannot be changed; create the new entry and delete this one.",
                    param=key,
                )
        fields = check_fields(changes)
        if "enabled" in changes and changes["enabled"] is None:
            raise InvalidRequest("'enabled' must be true or false.", param="enabled")
        async with self._db.write() as conn:
            before = await self._get(conn, provider, model, lock=True)
            now = self._db.now()
            await conn.execute(
                update(catalog)
                .where(and_(catalog.c.provider == provider, catalog.c.model == model))
                .values(**fields, updated_at=now)
            )
            after = await self._get(conn, provider, model)
            await self._audit(conn, actor, "catalog.update", after, before.view(), after.view())
        return after

    async def delete(self, provider: str, model: str, *, actor: str) -> None:
        async with self._db.write() as conn:
            before = await self._get(conn, provider, model, lock=True)
            await conn.execute(
                delete(catalog).where(and_(catalog.c.provider == provider, catalog.c.model == model))
            )
            await self._audit(conn, actor, "catalog.delete", before, before.view(), None)

    async def upsert_many(
        self, provider: str, entries: Iterable[tuple[str, Mapping[str, Any]]], *, actor: str
    ) -> int:
        """Create or update the given models of ``provider`` in one transaction (an import); the
        fields given replace the stored ones, the others are kept. One audit entry for all."""
        items = [(model, check_fields(fields)) for model, fields in entries]
        if not items:
            return 0
        async with self._db.write() as conn:
            existing = {
                row["model"]
                for row in (await conn.execute(select(catalog.c.model).where(catalog.c.provider == provider)))
                .mappings()
                .all()
            }
            now = self._db.now()
            for model, fields in items:
                if model in existing:
                    await conn.execute(
                        update(catalog)
                        .where(and_(catalog.c.provider == provider, catalog.c.model == model))
                        .values(**fields, updated_at=now)
                    )
                else:
                    await conn.execute(insert(catalog).values(**self._new(provider, model, fields)))
            await write_entry(
                conn,
                at=now,
                actor=actor,
                action="catalog.import",
                target=provider,
                before=None,
                after={
                    "created": sorted(m for m, _ in items if m not in existing),
                    "updated": sorted(m for m, _ in items if m in existing),
                },
            )
        return len(items)

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        record: CatalogRecord,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> None:
        await write_entry(
            conn,
            at=self._db.now(),
            actor=actor,
            action=action,
            target=f"{record.provider}/{record.model}"[:256],
            before=before,
            after=after,
        )
