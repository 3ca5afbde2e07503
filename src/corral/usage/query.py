"""Reading usage back: totals per group, latency p50/p95, series per time bucket, the top groups
with "other", the live tail, and compare.

The question (filter, ``group_by``, ``step``, ``top``) is parsed by ``corral.usage.params``; the
answers are the figures of ``corral.usage.figures``. Hour and day buckets are labelled
``2025-01-31T13:00:00Z`` and ``2025-01-31``.

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

**Long ranges read the rollup** (``corral.usage.rollup_series``): a summary or series over more
than an hour that groups by at most one dimension and filters on at most one. Other questions
(a ``model`` filter, two dimensions, short ranges, and a series by key or user in buckets
shorter than an hour, whose minute totals are about as many as the rows when each key sends a
few requests a minute) read the rows and rank the exact latencies.

**Top groups** (``corral.usage.top``): with ``top``, the groups are first ranked by a summary of
the whole range (from the rollup when it can), then the grouped query groups by the kept value
and a folded flag, so the rest comes back as one "other" row per bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.errors import InvalidRequest
from corral.store.tables import usage
from corral.usage import rollup_series
from corral.usage.figures import (
    PERCENTILES,
    Label,
    SeriesPoint,
    UsageEntry,
    UsageSummary,
    group_order,
    percentile,
    ranked,
)
from corral.usage.params import (
    DEFAULT_TOP,
    DIMENSIONS,
    MAX_TOP,
    TIME_DIMENSIONS,
    Top,
    UsageFilter,
    parse_group_by,
    parse_last,
    parse_step,
    parse_top,
)
from corral.usage.record import UsageRecord
from corral.usage.rollup_series import ROLLUP_AFTER
from corral.usage.top import Kept, rank

MAX_RECENT = 1000


class UsageQuery:
    def __init__(self, engine: AsyncEngine, *, rollup: bool = True) -> None:
        """``rollup=False`` reads every question from the rows (exact percentiles, slow on long ranges)."""
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._rollup = rollup

    async def summary(
        self, where: UsageFilter | None = None, group_by: Sequence[str] = (), top: Top | None = None
    ) -> list[UsageSummary]:
        """Totals per group, sorted by group (time buckets in order; None, then "other", last)."""
        where = where or UsageFilter()
        group_by = parse_group_by(group_by)
        topped = _topped(group_by, top)
        kept = await self._kept(where, topped, top)
        plan = rollup_series.plan(where, group_by) if self._rollup else None
        if plan is not None:
            return await rollup_series.summary(self._engine, where, group_by, plan, kept)
        keys = [_dimension(name, self._postgres) for name in group_by]
        exprs, flag = _grouped(keys, group_by, topped, kept)
        c = usage.c
        failed = or_(c.status >= 400, c.error_class.is_not(None))
        n = len(exprs) + len(flag)
        columns: list[Any] = [
            *exprs,
            *flag,
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0),
            func.coalesce(func.sum(c.completion_tokens), 0),
            func.coalesce(func.sum(c.total_tokens), 0),
            func.coalesce(func.sum(c.cost_usd), 0.0),
            func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.tokens_estimated, 1), else_=0)), 0),
            *self._percentile_columns(),
        ]
        query = select(*columns).where(*where.conditions()).group_by(*exprs, *flag)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = []
        for row in rows:
            if row.requests == 0 and exprs:
                continue
            p50, p95 = self._percentiles(row)
            found.append(
                UsageSummary(
                    group=tuple(
                        (name, fmt(value))
                        for name, (_, fmt), value in zip(group_by, keys, row[: len(exprs)], strict=True)
                    ),
                    requests=int(row.requests),
                    prompt_tokens=int(row[n + 1]),
                    completion_tokens=int(row[n + 2]),
                    total_tokens=int(row[n + 3]),
                    cost_usd=float(row[n + 4]),
                    errors=int(row[n + 5]),
                    estimated=int(row[n + 6]),
                    latency_p50_ms=None if p50 is None else float(p50),
                    latency_p95_ms=None if p95 is None else float(p95),
                    other=kept.folded if kept is not None and row[len(exprs)] else 0,
                )
            )
        return sorted(found, key=lambda s: group_order(s, topped))

    async def series(
        self, where: UsageFilter, step: int, group_by: Sequence[str] = (), top: Top | None = None
    ) -> list[SeriesPoint]:
        """``summary`` per ``step``-second bucket of ``where``'s window (which must have a
        ``since``), oldest first (then by group); empty buckets are left out."""
        if where.since is None:
            raise InvalidRequest("A series needs a time range: 'last' or 'since'.", param="last")
        group_by = parse_group_by(group_by)
        if "hour" in group_by or "day" in group_by:
            raise InvalidRequest("A series is bucketed by 'step'; group it by provider, model, key, "
                                 "user, instance or requested_model.", param="group_by")  # fmt: skip
        topped = _topped(group_by, top)
        kept = await self._kept(where, topped, top)
        plan = rollup_series.plan(where, group_by) if self._rollup and step % 60 == 0 else None
        if plan is not None and step % 3600 and plan[0] in ("key", "user"):
            plan = None  # minute totals of keys and users are about as many as the rows: read those
        if plan is not None:
            return await rollup_series.series(self._engine, where, step, group_by, plan, kept)
        c = usage.c
        if self._postgres:
            epoch: ColumnElement[Any] = func.floor(func.extract("epoch", c.at) / step)
        else:
            epoch = func.cast(func.strftime(literal_column("'%s'"), c.at), Integer) // step
        keys = [_dimension(name, self._postgres) for name in group_by]
        grouped, flag = _grouped(keys, group_by, topped, kept)
        exprs = [epoch.label("bucket"), *grouped]
        failed = or_(c.status >= 400, c.error_class.is_not(None))
        columns: list[Any] = [
            *exprs,
            *flag,
            func.count().label("requests"),
            func.coalesce(func.sum(c.prompt_tokens), 0),
            func.coalesce(func.sum(c.completion_tokens), 0),
            func.coalesce(func.sum(c.cost_usd), 0.0),
            func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
            func.coalesce(func.sum(case((c.tokens_estimated, 1), else_=0)), 0),
            func.avg(c.ttft_ms),
            *self._percentile_columns(),
        ]
        query = select(*columns).where(*where.conditions()).group_by(*exprs, *flag)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        n = len(exprs) + len(flag)
        points = []
        for row in rows:
            p50, p95 = self._percentiles(row)
            prompt, completion = int(row[n + 1]), int(row[n + 2])
            summary = UsageSummary(
                group=tuple(
                    (name, fmt(value))
                    for name, (_, fmt), value in zip(group_by, keys, row[1 : len(exprs)], strict=True)
                ),
                requests=int(row.requests), prompt_tokens=prompt, completion_tokens=completion,
                total_tokens=prompt + completion, cost_usd=float(row[n + 3]), errors=int(row[n + 4]),
                estimated=int(row[n + 5]), latency_p50_ms=None if p50 is None else float(p50),
                latency_p95_ms=None if p95 is None else float(p95),
                other=kept.folded if kept is not None and row[len(exprs)] else 0,
            )  # fmt: skip
            start = rollup_series.bucket_start(int(row[0]), step)
            ttft = row[n + 6]
            points.append(SeriesPoint(start, summary, None if ttft is None else round(float(ttft), 2)))
        return sorted(points, key=lambda p: rollup_series.point_order(p, topped))

    async def _kept(self, where: UsageFilter, topped: str | None, top: Top | None) -> Kept | None:
        """The groups of ``topped`` to keep, ranked over the whole range (None: keep them all)."""
        if top is None or topped is None:
            return None
        ranking = await self.summary(where, (topped,))
        return rank({s.group[0][1]: (s.requests, s.cost_usd) for s in ranking}, top)

    def _percentile_columns(self) -> list[Any]:
        c = usage.c
        if self._postgres:
            return [func.percentile_cont(p).within_group(c.latency_ms) for p in PERCENTILES]
        return [func.group_concat(c.latency_ms)]

    def _percentiles(self, row: Any) -> tuple[float | None, float | None]:
        if self._postgres:
            return row[-2], row[-1]
        latencies = ranked(row[-1])
        return percentile(latencies, PERCENTILES[0]), percentile(latencies, PERCENTILES[1])

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


def _topped(group_by: tuple[str, ...], top: Top | None) -> str | None:
    """The dimension ``top`` ranks (the one besides hour and day), checked."""
    if top is None:
        return None
    dims = [name for name in group_by if name not in TIME_DIMENSIONS]
    if len(dims) != 1 or not 1 <= top.n <= MAX_TOP:
        raise InvalidRequest(
            f"'top' (1 to {MAX_TOP}) keeps the first groups of one dimension besides hour and day.",
            param="top",
        )
    return dims[0]


def _grouped(
    keys: list[tuple[ColumnElement[Any], Callable[[Any], Label]]],
    group_by: tuple[str, ...],
    topped: str | None,
    kept: Kept | None,
) -> tuple[list[Any], list[Any]]:
    """The grouped expressions (the topped one as its kept value) and the folded flag, if any."""
    exprs: list[Any] = []
    flag: list[Any] = []
    for i, (name, (expr, _)) in enumerate(zip(group_by, keys, strict=True)):
        if kept is not None and name == topped:
            exprs.append(kept.value(expr).label(f"g{i}"))
            flag.append(kept.flag(expr).label("o"))
        else:
            exprs.append(expr.label(f"g{i}"))
    return exprs, flag


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


__all__ = [
    "DEFAULT_TOP",
    "DIMENSIONS",
    "MAX_TOP",
    "ROLLUP_AFTER",
    "SeriesPoint",
    "Top",
    "UsageEntry",
    "UsageFilter",
    "UsageQuery",
    "UsageSummary",
    "parse_group_by",
    "parse_last",
    "parse_step",
    "parse_top",
]
