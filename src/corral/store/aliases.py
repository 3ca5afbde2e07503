"""Stored model aliases: a name and a free-form JSON ``spec`` (targets, fallbacks, strategy,
explicit_only, num_ctx, ...) that callers validate. CRUD with PATCH updates, every write audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import InvalidRequest
from corral.store.access import Access, check_name, iso, json_object
from corral.store.audit import write_entry
from corral.store.errors import AlreadyExists, Missing
from corral.store.tables import aliases

KIND = "alias"


@dataclass(frozen=True, slots=True)
class AliasRecord:
    name: str
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.spec,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def _record(row: Mapping[Any, Any]) -> AliasRecord:
    return AliasRecord(
        name=row["name"], spec=dict(row["spec"]), created_at=row["created_at"], updated_at=row["updated_at"]
    )


class AliasRepo:
    def __init__(self, access: Access) -> None:
        self._db = access

    async def list(self) -> list[AliasRecord]:
        async with self._db.read() as conn:
            rows = (await conn.execute(select(aliases).order_by(aliases.c.name))).mappings().all()
        return [_record(row) for row in rows]

    async def get(self, name: str) -> AliasRecord:
        async with self._db.read() as conn:
            return await self._get(conn, name)

    async def _get(self, conn: AsyncConnection, name: str, *, lock: bool = False) -> AliasRecord:
        query = select(aliases).where(aliases.c.name == name)
        if lock:
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise Missing(KIND, name)
        return _record(row)

    async def create(self, name: str, spec: Mapping[str, Any], *, actor: str) -> AliasRecord:
        check_name(KIND, name, 256)
        clean = json_object("spec", {k: v for k, v in spec.items() if v is not None})
        now = self._db.now()
        record = AliasRecord(name=name, spec=clean, created_at=now, updated_at=now)
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    insert(aliases).values(name=name, spec=clean, created_at=now, updated_at=now)
                )
                await write_entry(
                    conn,
                    at=now,
                    actor=actor,
                    action="alias.create",
                    target=name,
                    before=None,
                    after=record.view(),
                )
        except IntegrityError:
            raise AlreadyExists(KIND, name) from None
        return record

    async def update(self, name: str, changes: Mapping[str, Any], *, actor: str) -> AliasRecord:
        """PATCH on the spec: a field absent from ``changes`` is kept, ``None`` removes it."""
        if "name" in changes and changes["name"] != name:
            raise InvalidRequest(
                "An alias cannot be renamed. Create it under the new name, then delete the old one.",
                param="name",
            )
        async with self._db.write() as conn:
            before = await self._get(conn, name, lock=True)
            spec = dict(before.spec)
            for key, value in changes.items():
                if key == "name":
                    continue
                if value is None:
                    spec.pop(key, None)
                else:
                    spec[key] = value
            clean = json_object("spec", spec)
            now = self._db.now()
            await conn.execute(
                update(aliases).where(aliases.c.name == name).values(spec=clean, updated_at=now)
            )
            after = AliasRecord(name=name, spec=clean, created_at=before.created_at, updated_at=now)
            await write_entry(
                conn,
                at=now,
                actor=actor,
                action="alias.update",
                target=name,
                before=before.view(),
                after=after.view(),
            )
        return after

    async def delete(self, name: str, *, actor: str) -> None:
        async with self._db.write() as conn:
            before = await self._get(conn, name, lock=True)
            await conn.execute(delete(aliases).where(aliases.c.name == name))
            await write_entry(
                conn,
                at=self._db.now(),
                actor=actor,
                action="alias.delete",
                target=name,
                before=before.view(),
                after=None,
            )
