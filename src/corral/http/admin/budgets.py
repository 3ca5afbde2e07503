"""GET /admin/budgets: every gateway key with a budget, with what it has spent in its current
budget window (read from the usage table, like the budget seeder does). Admin scope."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from corral.errors import InvalidRequest
from corral.http.admin.context import AdminContext, listing
from corral.limits import Limits
from corral.usage.spend import spend_since


class BudgetRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.plane(request)
        now = datetime.now(UTC).timestamp()
        by_start: dict[float, list[tuple[str, Limits]]] = defaultdict(list)
        for record in await plane.store.keys.list():
            if record.limits.get("max_budget") is None:
                continue
            try:
                limits = Limits.from_mapping(record.limits)
            except InvalidRequest:
                continue  # the accountant refuses such a key; GET /admin/keys shows its limits
            if limits.period is not None:
                by_start[limits.period.start(now)].append((record.id, limits))
        rows: list[dict[str, Any]] = []
        for start, keys in sorted(by_start.items()):
            since = datetime.fromtimestamp(start, UTC)
            spent = await spend_since(plane.store.engine, "key_id", [k for k, _ in keys], since)
            for key_id, limits in keys:
                rows.append(
                    {
                        "id": key_id,
                        "max_budget": limits.max_budget,
                        "period": limits.period.text if limits.period else None,
                        "since": since.isoformat().replace("+00:00", "Z"),
                        "spent": spent.get(key_id, 0.0),
                    }
                )
        return listing(sorted(rows, key=lambda r: r["id"]))
