"""Summaries and series over long ranges, read from the per-minute, hour and day totals.

``plan`` says whether a question can be answered from the rollup: a range longer than
``ROLLUP_AFTER`` (or with no start), no ``model`` filter, at most one dimension besides hour and
day, and at most one filter among key, user, provider and surface (then grouped by nothing else).
It returns the (dimension, value) that ``corral.usage.rollup_read.read`` takes; ``summary`` and
``series`` turn what it reads into the figures of ``corral.usage.figures``, with the groups past
``top`` folded into one "other" (``corral.usage.top``). Counts, tokens and cost are those of the
rows; latency percentiles come from the histogram (within one bucket, 26 %).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from corral.usage.figures import Label, SeriesPoint, UsageSummary, from_totals, group_order
from corral.usage.params import TIME_DIMENSIONS, UsageFilter
from corral.usage.rollup import Totals
from corral.usage.rollup_read import NO_STEP, Buckets, Others, read
from corral.usage.top import Kept

ROLLUP_AFTER = timedelta(hours=1)  # longer ranges read the rollup
_FILTERS = (("key_id", "key"), ("user", "user"), ("provider", "provider"), ("surface", "surface"))

Plan = tuple[str, str | None]


def plan(where: UsageFilter, group_by: Sequence[str]) -> Plan | None:
    """(dimension, value) to read from the rollup, or None when the rows must answer."""
    if where.model is not None:
        return None
    if where.since is not None:
        until = where.until or datetime.now(UTC)
        if until - where.since <= ROLLUP_AFTER:
            return None
    filters = [(dim, getattr(where, f)) for f, dim in _FILTERS if getattr(where, f) is not None]
    grouped = [name for name in group_by if name not in TIME_DIMENSIONS]
    if len(filters) > 1 or len(grouped) > 1:
        return None
    if filters:
        dim, value = filters[0]
        return (dim, value) if not grouped or grouped[0] == dim else None
    return (grouped[0] if grouped else ""), None


async def _read(
    engine: AsyncEngine, where: UsageFilter, found: Plan, step: int, kept: Kept | None
) -> tuple[Buckets, Others]:
    now = int(time.time())
    since = None if where.since is None else math.floor(where.since.timestamp())
    # no end: up to the end of tomorrow, whole rollup rows (today's are up to date)
    end = where.until
    until = (now // 86400 + 2) * 86400 if end is None else math.ceil(end.timestamp())
    bare = UsageFilter(key_id=where.key_id, user=where.user, provider=where.provider, surface=where.surface)
    async with engine.connect() as conn:
        return await read(conn, found[0], found[1], step, since, until, bare.conditions(), now, kept)


def _topped(group_by: Sequence[str]) -> str | None:
    return next((name for name in group_by if name not in TIME_DIMENSIONS), None)


async def summary(
    engine: AsyncEngine, where: UsageFilter, group_by: tuple[str, ...], found: Plan, kept: Kept | None = None
) -> list[UsageSummary]:
    step = 3600 if "hour" in group_by else 86400 if "day" in group_by else NO_STEP
    buckets, others = await _read(engine, where, found, step, kept)
    merged: dict[tuple[tuple[Label, ...], bool], Totals] = {}
    items: list[tuple[tuple[int, Label], Totals, bool]] = [(k, t, False) for k, t in buckets.items()]
    items += [((bucket, None), t, True) for bucket, t in others.items()]
    for (bucket, label), totals, folded in items:
        start = datetime.fromtimestamp(bucket * step, UTC) if step != NO_STEP else None
        group = tuple(_time_label(name, start) if name in TIME_DIMENSIONS else label for name in group_by)
        into = merged.get((group, folded))
        if into is None:
            merged[(group, folded)] = totals
        else:
            into.merge(totals)
    other = kept.folded if kept is not None else 0
    rows = [
        from_totals(tuple(zip(group_by, group, strict=True)), t, other if folded else 0)
        for (group, folded), t in merged.items()
    ]
    topped = _topped(group_by)
    return sorted(rows, key=lambda s: group_order(s, topped))


async def series(
    engine: AsyncEngine,
    where: UsageFilter,
    step: int,
    group_by: tuple[str, ...],
    found: Plan,
    kept: Kept | None = None,
) -> list[SeriesPoint]:
    buckets, others = await _read(engine, where, found, step, kept)
    merged: dict[tuple[int, tuple[Label, ...], bool], Totals] = {}
    items: list[tuple[int, Label, Totals, bool]] = [(b, label, t, False) for (b, label), t in buckets.items()]
    items += [(b, None, t, True) for b, t in others.items()]
    for bucket, label, totals, folded in items:
        key = (bucket, tuple(label for _ in group_by), folded)
        into = merged.get(key)
        if into is None:
            merged[key] = totals
        else:
            into.merge(totals)
    other = kept.folded if kept is not None else 0
    topped = _topped(group_by)
    points = []
    for (bucket, group, folded), t in merged.items():
        summary = from_totals(tuple(zip(group_by, group, strict=True)), t, other if folded else 0)
        summary = replace(summary, total_tokens=t.prompt_tokens + t.completion_tokens)
        ttft = round(t.ttft_sum_ms / t.ttft_count, 2) if t.ttft_count else None
        points.append(SeriesPoint(bucket_start(bucket, step), summary, ttft))
    return sorted(points, key=lambda p: point_order(p, topped))


def bucket_start(bucket: int, step: int) -> datetime:
    return datetime.fromtimestamp(bucket * step, UTC)


def point_order(point: SeriesPoint, topped: str | None) -> tuple[Any, ...]:
    return (point.start, group_order(point.summary, topped))


def _time_label(name: str, start: datetime | None) -> Label:
    if start is None:
        return None
    return start.strftime("%Y-%m-%dT%H:00:00Z" if name == "hour" else "%Y-%m-%d")


__all__ = ["ROLLUP_AFTER", "bucket_start", "plan", "point_order", "series", "summary"]
