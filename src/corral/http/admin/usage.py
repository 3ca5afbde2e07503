"""GET /admin/usage (totals, group_by, p50/p95), /admin/usage/recent (the live tail),
/admin/usage/compare (providers side by side) and /admin/usage/series (the same figures per
time bucket, for charts). Admin scope.

``top`` (and ``top_by``) keeps the first groups of the one dimension grouped by and folds the
rest into one "other" row (``corral.usage.top``): optional for ``/admin/usage``, ``DEFAULT_TOP``
for a series grouped by one dimension unless given (at most ``MAX_TOP``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from aiohttp import web

from corral.errors import InvalidRequest, NotFound
from corral.http.auth import Authenticator
from corral.http.parts import Parts
from corral.usage.query import (
    DEFAULT_TOP,
    Top,
    UsageFilter,
    UsageQuery,
    parse_group_by,
    parse_step,
    parse_top,
)


def _query(parts: Parts) -> UsageQuery:
    plane = parts.control
    if plane is None:
        raise NotFound("Usage is recorded only when corral runs with its data directory (corral serve).")
    return UsageQuery(plane.store.engine)


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _top(top: Top | None) -> dict[str, object]:
    return {} if top is None else {"top": top.n, "top_by": top.by}


class UsageRoutes:
    def __init__(self, auth: Authenticator, parts: Parts) -> None:
        self._auth = auth
        self._parts = parts

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/admin/usage", self.summary)
        app.router.add_get("/admin/usage/recent", self.recent)
        app.router.add_get("/admin/usage/compare", self.compare)
        app.router.add_get("/admin/usage/series", self.series)

    async def summary(self, request: web.Request) -> web.Response:
        self._auth.admin(request)
        where = UsageFilter.from_params(request.query, datetime.now(UTC))
        group_by = parse_group_by(request.query.get("group_by"))
        top = parse_top(request.query, group_by, default=None)
        rows = await _query(self._parts).summary(where, group_by, top)
        return _json({"group_by": list(group_by), **_top(top), "data": [r.view() for r in rows]})

    async def recent(self, request: web.Request) -> web.Response:
        self._auth.admin(request)
        try:
            limit = int(request.query.get("limit", "100"))
            after = int(request.query["after"]) if "after" in request.query else None
        except ValueError:
            raise InvalidRequest("'limit' and 'after' must be whole numbers.", param="limit") from None
        where = UsageFilter.from_params(request.query, datetime.now(UTC))
        rows = await _query(self._parts).recent(limit, after, where)
        return _json({"data": [r.view() for r in rows]})

    async def compare(self, request: web.Request) -> web.Response:
        self._auth.admin(request)
        where = UsageFilter.from_params(request.query, datetime.now(UTC))
        rows = await _query(self._parts).compare(where)
        return _json({"data": [r.view() for r in rows]})

    async def series(self, request: web.Request) -> web.Response:
        """Buckets of ``step`` over ``last`` (default 1h) or ``since``/``until``."""
        self._auth.admin(request)
        now = datetime.now(UTC)
        params = dict(request.query)
        if not params.get("since", "").strip():
            params.pop("since", None)
            params.setdefault("last", "1h")
        where = UsageFilter.from_params(params, now)
        since = where.since or now - timedelta(hours=1)
        until = where.until or now
        step = parse_step(params.get("step"), until - since)
        group_by = parse_group_by(params.get("group_by"))
        top = parse_top(params, group_by, default=DEFAULT_TOP)
        points = await _query(self._parts).series(where, step, group_by, top)
        return _json(
            {
                "since": since.isoformat().replace("+00:00", "Z"),
                "until": until.isoformat().replace("+00:00", "Z"),
                "step": step,
                "group_by": list(group_by),
                **_top(top),
                "data": [p.view() for p in points],
            }
        )
