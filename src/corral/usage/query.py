"""Reading usage back: filters, group_by, totals, latency p50/p95, the live tail, and compare.

``UsageFilter.from_params`` parses the query string of ``GET /admin/usage`` (``since``/``until``
as ISO 8601, or ``last=15m|1h|7d``; ``key``, ``user``, ``model``, ``provider``, ``surface``) and
``parse_group_by`` its ``group_by`` (comma-separated: provider, model, key, user, hour, day,
instance, requested_model, surface). ``model`` matches the requested or the served model and groups by
the served one (the requested one when no upstream answered). Times are UTC; ``since`` is
inclusive, ``until`` exclusive; hour and day buckets are labelled ``2025-01-31T13:00:00Z`` and
``2025-01-31``.

Percentiles interpolate linearly between ranks (PostgreSQL's ``percentile_cont``, Python's
``statistics.quantiles(method="inclusive")``). PostgreSQL computes them in the grouped query;
SQLite, which has no percentile function, hands each group's latencies back as one
``group_concat`` string from the same scan, and they are ranked in Python (faster than
numbering them with window functions, which sorts every row twice). Every filter hits an
index that ends with ``at`` (see ``corral.store.tables.usage``); on SQLite the grouped columns
are wrapped (``col || ''``) so the planner never walks a whole grouping index to save a sort.

``series`` is the same summary per time bucket (``step`` seconds, aligned to the Unix epoch)
over a bounded window (``last``, or ``since``/``until``): one range scan of ``ix_usage_at`` (or
of the filter's own index), grouped by the bucket number computed from ``at``. Buckets with no
requests are left out; the caller fills the gaps.

**Long ranges read the rollup.** A summary or series over more than ``ROLLUP_AFTER`` (or
with no start) that groups by at most one dimension besides time and filters on at most one
(key, user, provider or surface, and then groups by nothing else) is answered from the
per-minute, hour and day totals (``corral.usage.rollup_read``): counts, tokens and cost as the
rows say, latency percentiles from a log-bucket histogram (within one bucket, 26 %). Other
questions (a ``model`` filter, two dimensions, short ranges, and a series by key or user in
buckets shorter than an hour, whose minute totals are about as many as the rows when each key
sends a few requests a minute) read the rows and rank the exact latencies.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.errors import InvalidRequest
from corral.store.tables import usage
from corral.usage.record import UsageRecord
from corral.usage.rollup import Totals
from corral.usage.rollup_read import NO_STEP, read

MAX_RECENT = 1000
MAX_GROUPS = 3
PERCENTILES = (0.5, 0.95)
_LAST = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LAST_DAYS = 400  # 'last' reaches back at most this far (further, its date would not exist)
MAX_BUCKETS = 1500
_FILTER_PARAMS = {
    "key": "key_id", "user": "user", "model": "model", "provider": "provider", "surface": "surface",
}  # fmt: skip
DIMENSIONS = ("provider", "model", "key", "user", "hour", "day", "instance", "requested_model", "surface")
ROLLUP_AFTER = timedelta(hours=1)  # longer ranges read the rollup (see the module docstring)
_ROLLUP_FILTERS = (("key_id", "key"), ("user", "user"), ("provider", "provider"), ("surface", "surface"))

Label = str | None


@dataclass(frozen=True, slots=True)
class UsageFilter:
    since: datetime | None = None
    until: datetime | None = None
    key_id: str | None = None
    user: str | None = None
    model: str | None = None
    provider: str | None = None
    surface: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: datetime) -> UsageFilter:
        """Parse query parameters; ``InvalidRequest`` names the parameter and the expected form."""
        since = _time(params, "since")
        until = _time(params, "until")
        last = params.get("last")
        if last is not None:
            if since is not None:
                raise InvalidRequest("Give either 'last' or 'since', not both.", param="last")
            since = now.astimezone(UTC) - parse_last(last)
        if since is not None and until is not None and until <= since:
            raise InvalidRequest("'until' must be later than 'since'.", param="until")
        values = {field: params.get(name) or None for name, field in _FILTER_PARAMS.items()}
        return cls(since=since, until=until, **values)

    def conditions(self) -> list[ColumnElement[bool]]:
        c = usage.c
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(c.at >= self.since)
        if self.until is not None:
            found.append(c.at < self.until)
        if self.key_id is not None:
            found.append(c.key_id == self.key_id)
        if self.user is not None:
            found.append(c.user == self.user)
        if self.provider is not None:
            found.append(c.provider == self.provider)
        if self.surface is not None:
            found.append(c.surface == self.surface)
        if self.model is not None:
            found.append(or_(c.requested_model == self.model, c.served_model == self.model))
        return found


def parse_last(value: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` as a ``timedelta``."""
    match = _LAST.match(value)
    if match is None or int(match[1]) == 0:
        raise InvalidRequest(
            "'last' must be a positive number followed by s, m, h, d or w (like 15m, 1h, 7d); "
            f"got {value[:40]!r}.",
            param="last",
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > MAX_LAST_DAYS * 86400:
        raise InvalidRequest(
            f"'last' may be at most {MAX_LAST_DAYS} days (like {MAX_LAST_DAYS}d); for older usage give "
            "'since' (and 'until') as dates.",
            param="last",
        )
    return timedelta(seconds=seconds)


def parse_group_by(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"provider,model"`` (or a list) as a tuple of dimensions, checked."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(part.strip() for part in parts if part.strip())
    for name in names:
        if name not in DIMENSIONS:
            raise InvalidRequest(
                f"Unknown group_by {name[:40]!r}; use one or more of {', '.join(DIMENSIONS)}, "
                "comma-separated.",
                param="group_by",
            )
    if len(set(names)) != len(names) or len(names) > MAX_GROUPS:
        raise InvalidRequest(
            f"group_by takes up to {MAX_GROUPS} different dimensions, comma-separated.", param="group_by"
        )
    return names


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Totals of one group (or of everything, when ``group`` is empty)."""

    group: tuple[tuple[str, Label], ...]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    errors: int
    estimated: int  # requests whose token counts were estimated
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    def view(self) -> dict[str, Any]:
        return {
            **dict(self.group),
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "errors": self.errors,
            "estimated": self.estimated,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
        }


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One stored record with its row id (the cursor of the live tail)."""

    id: int
    record: UsageRecord

    def view(self) -> dict[str, Any]:
        return {"id": self.id, **self.record.to_json()}


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One time bucket (of one group): its start and the same figures as ``UsageSummary``."""

    start: datetime
    summary: UsageSummary
    ttft_avg_ms: float | None = None  # streamed requests' mean time to first byte

    def view(self) -> dict[str, Any]:
        return {
            "t": self.start.isoformat().replace("+00:00", "Z"),
            **self.summary.view(),
            "ttft_avg_ms": self.ttft_avg_ms,
        }


NICE_STEPS = (10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)


def parse_step(value: str | None, window: timedelta) -> int:
    """The bucket width in whole seconds: ``value`` (``"1m"``, ``"5m"``, ``"1h"``), or by default
    the smallest usual width that draws ``window`` in at most 60 buckets. At most MAX_BUCKETS."""
    span = max(1.0, window.total_seconds())
    if value is None:
        return next((s for s in NICE_STEPS if span / s <= 60), NICE_STEPS[-1])
    match = _LAST.match(value)
    if match is None or int(match[1]) == 0:
        raise InvalidRequest(
            "'step' must be a positive number followed by s, m, h, d or w (like 1m, 5m, 1h); "
            f"got {value[:40]!r}.",
            param="step",
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    if span / seconds > MAX_BUCKETS:
        raise InvalidRequest(
            f"'step' {value.strip()} makes {span / seconds:.0f} buckets over this range; at most "
            f"{MAX_BUCKETS} are drawn. Choose a larger step or a shorter range.",
            param="step",
        )
    return seconds


class UsageQuery:
    def __init__(self, engine: AsyncEngine, *, rollup: bool = True) -> None:
        """``rollup=False`` reads every question from the rows (exact percentiles, slow on long ranges)."""
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._rollup = rollup

    async def summary(
        self, where: UsageFilter | None = None, group_by: Sequence[str] = ()
    ) -> list[UsageSummary]:
        """Totals per group, sorted by group (time buckets in order; None last)."""
        group_by = parse_group_by(group_by)
        plan = _rollup_plan(where or UsageFilter(), group_by) if self._rollup else None
        if plan is not None:
            return await self._summary_from_rollup(where or UsageFilter(), group_by, *plan)
        keys = [_dimension(name, self._postgres) for name in group_by]
        exprs = [expr.label(f"g{i}") for i, (expr, _) in enumerate(keys)]
        conditions = (where or UsageFilter()).conditions()
        c = usage.c
        failed = or_(c.status >= 400, c.error_class.is_not(None))
        columns: list[Any] = [
            *exprs,
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0),
            func.coalesce(func.sum(c.completion_tokens), 0),
            func.coalesce(func.sum(c.total_tokens), 0),
            func.coalesce(func.sum(c.cost_usd), 0.0),
            func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.tokens_estimated, 1), else_=0)), 0),
        ]
        if self._postgres:
            columns += [func.percentile_cont(p).within_group(c.latency_ms) for p in PERCENTILES]
        else:
            columns.append(func.group_concat(c.latency_ms))
        query = select(*columns).where(*conditions).group_by(*exprs)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = []
        for row in rows:
            raw = tuple(row[: len(exprs)])
            if row.requests == 0 and exprs:
                continue
            if self._postgres:
                p50, p95 = row[-2], row[-1]
            else:
                ranked = _ranked(row[-1])
                p50, p95 = (percentile(ranked, p) for p in PERCENTILES)
            found.append(
                UsageSummary(
                    group=tuple(
                        (name, fmt(value)) for name, (_, fmt), value in zip(group_by, keys, raw, strict=True)
                    ),
                    requests=int(row.requests),
                    prompt_tokens=int(row[len(exprs) + 1]),
                    completion_tokens=int(row[len(exprs) + 2]),
                    total_tokens=int(row[len(exprs) + 3]),
                    cost_usd=float(row[len(exprs) + 4]),
                    errors=int(row[len(exprs) + 5]),
                    estimated=int(row[len(exprs) + 6]),
                    latency_p50_ms=None if p50 is None else float(p50),
                    latency_p95_ms=None if p95 is None else float(p95),
                )
            )
        return sorted(found, key=lambda s: [(v is None, v or "") for _, v in s.group])

    async def series(self, where: UsageFilter, step: int, group_by: Sequence[str] = ()) -> list[SeriesPoint]:
        """``summary`` per ``step``-second bucket of ``where``'s window (which must have a
        ``since``), oldest first; empty buckets are left out."""
        if where.since is None:
            raise InvalidRequest("A series needs a time range: 'last' or 'since'.", param="last")
        group_by = parse_group_by(group_by)
        if "hour" in group_by or "day" in group_by:
            raise InvalidRequest("A series is bucketed by 'step'; group it by provider, model, key, "
                                 "user, instance or requested_model.", param="group_by")  # fmt: skip
        plan = _rollup_plan(where, group_by) if self._rollup and step % 60 == 0 else None
        if plan is not None and step % 3600 and plan[0] in ("key", "user"):
            plan = None  # minute totals of keys and users are about as many as the rows: read those
        if plan is not None:
            return await self._series_from_rollup(where, step, group_by, *plan)
        c = usage.c
        if self._postgres:
            epoch: ColumnElement[Any] = func.floor(func.extract("epoch", c.at) / step)
        else:
            epoch = func.cast(func.strftime(literal_column("'%s'"), c.at), Integer) // step
        keys = [_dimension(name, self._postgres) for name in group_by]
        exprs = [epoch.label("bucket"), *(expr.label(f"g{i}") for i, (expr, _) in enumerate(keys))]
        failed = or_(c.status >= 400, c.error_class.is_not(None))
        columns: list[Any] = [
            *exprs,
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0),
            func.coalesce(func.sum(c.completion_tokens), 0),
            func.coalesce(func.sum(c.cost_usd), 0.0),
            func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.tokens_estimated, 1), else_=0)), 0),
            func.avg(c.ttft_ms),
        ]
        if self._postgres:
            columns += [func.percentile_cont(p).within_group(c.latency_ms) for p in PERCENTILES]
        else:
            columns.append(func.group_concat(c.latency_ms))
        query = select(*columns).where(*where.conditions()).group_by(*exprs).order_by(exprs[0])
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        n = len(exprs)
        points = []
        for row in rows:
            if self._postgres:
                p50, p95 = row[-2], row[-1]
            else:
                ranked = _ranked(row[-1])
                p50, p95 = (percentile(ranked, p) for p in PERCENTILES)
            prompt, completion = int(row[n + 1]), int(row[n + 2])
            summary = UsageSummary(
                group=tuple(
                    (name, fmt(value)) for name, (_, fmt), value in zip(group_by, keys, row[1:n], strict=True)
                ),
                requests=int(row.requests), prompt_tokens=prompt, completion_tokens=completion,
                total_tokens=prompt + completion, cost_usd=float(row[n + 3]), errors=int(row[n + 4]),
                estimated=int(row[n + 5]), latency_p50_ms=None if p50 is None else float(p50),
                latency_p95_ms=None if p95 is None else float(p95),
            )  # fmt: skip
            start = datetime.fromtimestamp(int(row[0]) * step, UTC)
            ttft = row[n + 6]
            points.append(SeriesPoint(start, summary, None if ttft is None else round(float(ttft), 2)))
        return points

    async def _rolled(self, where: UsageFilter, dim: str, value: str | None, step: int) -> dict[Any, Totals]:
        now = int(time.time())
        since = None if where.since is None else math.floor(where.since.timestamp())
        # no end: up to the end of tomorrow, whole rollup rows (today's are up to date)
        end = where.until
        until = (now // 86400 + 2) * 86400 if end is None else math.ceil(end.timestamp())
        bare = UsageFilter(
            key_id=where.key_id, user=where.user, provider=where.provider, surface=where.surface
        )
        async with self._engine.connect() as conn:
            return await read(conn, dim, value, step, since, until, bare.conditions(), now)

    async def _summary_from_rollup(
        self, where: UsageFilter, group_by: tuple[str, ...], dim: str, value: str | None
    ) -> list[UsageSummary]:
        step = 3600 if "hour" in group_by else 86400 if "day" in group_by else NO_STEP
        merged: dict[tuple[Label, ...], Totals] = {}
        for (bucket, label), totals in (await self._rolled(where, dim, value, step)).items():
            start = datetime.fromtimestamp(bucket * step, UTC) if step != NO_STEP else None
            group = tuple(_time_label(name, start) if name in ("hour", "day") else label for name in group_by)
            into = merged.get(group)
            if into is None:
                merged[group] = totals
            else:
                into.merge(totals)
        found = [_summary(tuple(zip(group_by, group, strict=True)), t) for group, t in merged.items()]
        return sorted(found, key=lambda s: [(v is None, v or "") for _, v in s.group])

    async def _series_from_rollup(
        self, where: UsageFilter, step: int, group_by: tuple[str, ...], dim: str, value: str | None
    ) -> list[SeriesPoint]:
        merged: dict[tuple[int, tuple[Label, ...]], Totals] = {}
        for (bucket, label), totals in (await self._rolled(where, dim, value, step)).items():
            key = (bucket, tuple(label for _ in group_by))
            into = merged.get(key)
            if into is None:
                merged[key] = totals
            else:
                into.merge(totals)
        points = []
        for (bucket, group), t in sorted(merged.items(), key=lambda kv: kv[0][0]):
            summary = _summary(tuple(zip(group_by, group, strict=True)), t)
            summary = replace(summary, total_tokens=t.prompt_tokens + t.completion_tokens)
            ttft = round(t.ttft_sum_ms / t.ttft_count, 2) if t.ttft_count else None
            points.append(SeriesPoint(datetime.fromtimestamp(bucket * step, UTC), summary, ttft))
        return points

    async def compare(self, where: UsageFilter | None = None) -> list[UsageSummary]:
        """The providers side by side: ``summary`` grouped by provider."""
        return await self.summary(where, ("provider",))

    async def recent(
        self, limit: int = 100, after_id: int | None = None, where: UsageFilter | None = None
    ) -> list[UsageEntry]:
        """The live tail, oldest first: rows after ``after_id``, or the newest ``limit`` rows."""
        if not 1 <= limit <= MAX_RECENT:
            raise InvalidRequest(f"'limit' must be between 1 and {MAX_RECENT}.", param="limit")
        query = select(usage).where(*(where or UsageFilter()).conditions()).limit(limit)
        if after_id is None:
            query = query.order_by(usage.c.id.desc())
        else:
            query = query.where(usage.c.id > after_id).order_by(usage.c.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        entries = [UsageEntry(int(row["id"]), UsageRecord.from_row(dict(row))) for row in rows]
        return entries if after_id is not None else entries[::-1]


def _rollup_plan(where: UsageFilter, group_by: Sequence[str]) -> tuple[str, str | None] | None:
    """(dimension, value) to read from the rollup, or None when the rows must answer."""
    if where.model is not None:
        return None
    if where.since is not None:
        until = where.until or datetime.now(UTC)
        if until - where.since <= ROLLUP_AFTER:
            return None
    filters = [(dim, getattr(where, f)) for f, dim in _ROLLUP_FILTERS if getattr(where, f) is not None]
    grouped = [name for name in group_by if name not in ("hour", "day")]
    if len(filters) > 1 or len(grouped) > 1:
        return None
    if filters:
        dim, value = filters[0]
        return (dim, value) if not grouped or grouped[0] == dim else None
    return (grouped[0] if grouped else ""), None


def _summary(group: tuple[tuple[str, Label], ...], t: Totals) -> UsageSummary:
    p50, p95 = (t.percentile(p) for p in PERCENTILES)
    return UsageSummary(
        group=group, requests=t.requests, prompt_tokens=t.prompt_tokens,
        completion_tokens=t.completion_tokens, total_tokens=t.total_tokens, cost_usd=t.cost_usd,
        errors=t.errors, estimated=t.estimated,
        latency_p50_ms=None if p50 is None else round(p50, 3),
        latency_p95_ms=None if p95 is None else round(p95, 3),
    )  # fmt: skip


def _time_label(name: str, start: datetime | None) -> Label:
    if start is None:
        return None
    return start.strftime("%Y-%m-%dT%H:00:00Z" if name == "hour" else "%Y-%m-%d")


def _ranked(concatenated: str | None) -> list[float]:
    """SQLite's ``group_concat`` of a group's latencies, as a sorted list."""
    return sorted(map(float, concatenated.split(","))) if concatenated else []


def percentile(ranked: Sequence[float], p: float) -> float | None:
    """The ``p`` quantile of sorted ``ranked``, interpolated linearly (``percentile_cont``)."""
    if not ranked:
        return None
    position = (len(ranked) - 1) * p
    low = math.floor(position)
    high = min(low + 1, len(ranked) - 1)
    return ranked[low] + (ranked[high] - ranked[low]) * (position - low)


def _dimension(name: str, postgres: bool) -> tuple[ColumnElement[Any], Callable[[Any], Label]]:
    c = usage.c
    if name in ("hour", "day"):
        if postgres:
            truncated = func.date_trunc(
                literal_column(f"'{name}'"), func.timezone(literal_column("'UTC'"), c.at)
            )
            pattern = "%Y-%m-%dT%H:00:00Z" if name == "hour" else "%Y-%m-%d"
            return truncated, lambda v: None if v is None else v.strftime(pattern)
        sqlite_pattern = "%Y-%m-%dT%H:00:00Z" if name == "hour" else "%Y-%m-%d"
        return func.strftime(literal_column(f"'{sqlite_pattern}'"), c.at), _label
    column: ColumnElement[Any] = {
        "provider": c.provider,
        "model": func.coalesce(c.served_model, c.requested_model),
        "key": c.key_id,
        "user": c.user,
        "instance": c.instance,
        "requested_model": c.requested_model,
        "surface": c.surface,
    }[name]
    if not postgres:  # an expression, not an indexed column: see the module docstring
        column = column.op("||")(literal_column("''"))
    return column, _label


def _label(value: Any) -> Label:
    return None if value is None else str(value)


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidRequest(
            f"'{name}' must be an ISO 8601 time like 2025-01-31T13:00:00Z (UTC if no offset is given).",
            param=name,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "DIMENSIONS",
    "SeriesPoint",
    "UsageEntry",
    "UsageFilter",
    "UsageQuery",
    "UsageSummary",
    "parse_group_by",
    "parse_last",
    "parse_step",
]
