"""Spend read back from the usage table: what each key or user has spent since a moment.

Budgets are enforced by the limiter, which only counts what it saw since the process started;
``spend_since`` gives it the rest (see ``corral.accounting.budgets``). One grouped query per
``BATCH`` names, each an index range scan of ``ix_usage_key_id_at`` or ``ix_usage_user_at``;
names and the moment are bound parameters.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.store.tables import usage

Who = Literal["key_id", "user"]
BATCH = 500  # names per query: well under every backend's limit on bound parameters


async def spend_since(
    engine: AsyncEngine, who: Who, names: Collection[str], since: datetime
) -> dict[str, float]:
    """The summed ``cost_usd`` of the requests of each of ``names`` (key ids, or users) that
    arrived at or after ``since`` (timezone-aware). Names that spent nothing are left out."""
    column = usage.c[who]
    ordered = sorted(set(names))
    spent: dict[str, float] = {}
    async with engine.connect() as conn:
        for first in range(0, len(ordered), BATCH):
            query = (
                select(column, func.sum(usage.c.cost_usd))
                .where(column.in_(ordered[first : first + BATCH]), usage.c.at >= since)
                .group_by(column)
            )
            for name, total in (await conn.execute(query)).all():
                if total:
                    spent[name] = float(total)
    return spent


__all__ = ["BATCH", "Who", "spend_since"]
