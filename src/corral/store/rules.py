"""Stored routing rules: (power level, tier) -> a candidate model with a priority and a weight,
as ``router.rules`` in the YAML file. Created and deleted (a rule is small: change one by
deleting it and creating another), every write audited. Callers validate the whole config first.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from corral.store.access import Access, iso
from corral.store.audit import write_entry
from corral.store.errors import Missing
from corral.store.tables import routing_rules

KIND = "rule"


@dataclass(frozen=True, slots=True)
class RuleRecord:
    id: str
    level: str
    tier: str
    model: str
    priority: int
    weight: float
    created_at: datetime

    def spec(self) -> dict[str, Any]:
        """As a ``router.rules`` entry."""
        return {
            "level": self.level,
            "tier": self.tier,
            "model": self.model,
            "priority": self.priority,
            "weight": self.weight,
        }

    def view(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec(), "created_at": iso(self.created_at)}


def _record(row: Mapping[Any, Any]) -> RuleRecord:
    return RuleRecord(
        id=row["id"],
        level=row["level"],
        tier=row["tier"],
        model=row["model"],
        priority=int(row["priority"]),
        weight=float(row["weight"]),
        created_at=row["created_at"],
    )


class RuleRepo:
    def __init__(self, access: Access) -> None:
        self._db = access

    async def list(self) -> list[RuleRecord]:
        async with self._db.read() as conn:
            query = select(routing_rules).order_by(routing_rules.c.created_at, routing_rules.c.id)
            rows = (await conn.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    async def create(
        self, *, level: str, tier: str, model: str, priority: int, weight: float, actor: str
    ) -> RuleRecord:
        """Store a rule the caller validated (its level, tier, model, priority and weight)."""
        now = self._db.now()
        record = RuleRecord(secrets.token_hex(8), level, tier, model, priority, weight, now)
        async with self._db.write() as conn:
            await conn.execute(insert(routing_rules).values(**record.spec(), id=record.id, created_at=now))
            await write_entry(
                conn,
                at=now,
                actor=actor,
                action="rule.create",
                target=record.id,
                before=None,
                after=record.view(),
            )
        return record

    async def delete(self, rule_id: str, *, actor: str) -> RuleRecord:
        async with self._db.write() as conn:
            query = select(routing_rules).where(routing_rules.c.id == rule_id).with_for_update()
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                raise Missing(KIND, rule_id)
            before = _record(row)
            await conn.execute(delete(routing_rules).where(routing_rules.c.id == rule_id))
            await write_entry(
                conn,
                at=self._db.now(),
                actor=actor,
                action="rule.delete",
                target=rule_id,
                before=before.view(),
                after=None,
            )
        return before
