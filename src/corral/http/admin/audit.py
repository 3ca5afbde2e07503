"""GET /admin/audit: the change log, newest first, filtered by time, action and target.

Each entry names the actor (a key id, or "master"), the action, the target, the time, and
the object before and after the change with every secret redacted.
"""

from __future__ import annotations

from aiohttp import web

from corral.http.admin.context import AdminContext, listing
from corral.http.admin.input import query_int, query_text, reject_unknown_query, timestamp
from corral.store.audit import MAX_LIMIT

QUERY = ("limit", "offset", "since", "action", "target")
MAX_OFFSET = 2**31 - 1


class AuditRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx

    async def list(self, request: web.Request) -> web.Response:
        self._ctx.admin(request)
        plane = self._ctx.plane(request)
        reject_unknown_query(request, QUERY)
        since_raw = request.query.get("since")
        entries = await plane.store.audit.list(
            limit=query_int(request, "limit", 100, 1, MAX_LIMIT),
            offset=query_int(request, "offset", 0, 0, MAX_OFFSET),
            since=None if since_raw is None else timestamp(since_raw, "since", digits=True),
            action=query_text(request, "action", 64),
            target=query_text(request, "target", 256),
        )
        return listing([entry.view() for entry in entries])
