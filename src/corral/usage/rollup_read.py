"""Reading usage totals over a long range from the rollup, and its edges from the rows.

``read`` covers the range [since, until) with the coarsest rollup rows that fit whole (days,
then hours, then minutes; minute rows only within ``MINUTE_USABLE``) and reads what is left at
the edges (less than a minute each, or older sub-hour spans) from the usage rows with the same
grouped query the backfill uses (``raw_select``: counts per latency bucket). So counts, tokens
and cost are those of the rows for any range; latency percentiles come from the histogram
(``corral.usage.rollup``). A grain is used only when it divides the bucket width asked for.

Everything is one dimension (``""`` for all requests) and, optionally, one value of it: the
caller (``corral.usage.query``) sends other questions to the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, case, func, literal_column, null, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import usage, usage_rollup
from corral.usage.rollup import BOUNDS, GRAINS, HIST, MINUTE_USABLE, SUMS, Totals, decode, encode

Buckets = dict[tuple[int, str | None], Totals]
Piece = tuple[int, int | None, int]  # (grain, or 0 for the rows; start, None for the beginning; end)
NO_STEP = 86400 * 10**6  # a bucket width (whole days) that puts every time until 4707 in bucket 0


def _latency_bucket() -> ColumnElement[Any]:
    c = usage.c
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
        (c.latency_ms < literal_column(repr(b)), literal_column(str(i))) for i, b in enumerate(BOUNDS)
    ]
    return case(*whens, else_=literal_column(str(len(BOUNDS))))


def dim_column(dim: str) -> ColumnElement[Any]:
    c = usage.c
    return {
        "": null(),
        "provider": c.provider,
        "model": func.coalesce(c.served_model, c.requested_model),
        "key": c.key_id,
        "user": c.user,
        "instance": c.instance,
        "requested_model": c.requested_model,
        "surface": c.surface,
    }[dim]


def raw_select(
    dim: str,
    step: int,
    since: int | None,
    until: int | None,
    conditions: Sequence[ColumnElement[bool]],
    postgres: bool,
) -> Select[Any]:
    """Usage rows of [since, until) (Unix seconds) grouped by bucket, ``dim`` and latency bucket."""
    c = usage.c
    width: ColumnElement[Any] = literal_column(
        str(int(step))
    )  # a whole number, and the same text in GROUP BY
    if postgres:
        bucket: ColumnElement[Any] = func.floor(func.extract("epoch", c.at).op("/")(width))
    else:
        bucket = func.cast(func.strftime(literal_column("'%s'"), c.at), Integer).op("/")(width)
    value = dim_column(dim)
    if dim and not postgres:  # an expression, not an indexed column (see corral.usage.query)
        value = value.op("||")(literal_column("''"))
    failed = (c.status >= 400) | c.error_class.is_not(None)
    where = list(conditions)
    if since is not None:
        where.append(c.at >= datetime.fromtimestamp(since, UTC))
    if until is not None:
        where.append(c.at < datetime.fromtimestamp(until, UTC))
    lb = _latency_bucket()
    return (
        select(
            bucket.label("b"),
            value.label("v"),
            lb.label("lb"),
            func.count(),
            func.sum(case((failed, 1), else_=0)),
            func.sum(case((c.tokens_estimated, 1), else_=0)),
            func.sum(c.prompt_tokens),
            func.sum(c.completion_tokens),
            func.sum(c.total_tokens),
            func.sum(c.cost_usd),
            func.count(c.ttft_ms),
            func.sum(c.ttft_ms),
        )
        .where(*where)
        .group_by(literal_column("b"), literal_column("v"), literal_column("lb"))
    )


def fold(rows: Iterable[Sequence[Any]], into: Buckets | None = None) -> Buckets:
    """``raw_select`` rows as totals per (bucket, value)."""
    out: Buckets = {} if into is None else into
    for row in rows:
        key = (int(row[0]), row[1])
        totals = out.get(key)
        if totals is None:
            totals = out[key] = Totals()
        totals.add_sums(row[3:], bucket=int(row[2]))
    return out


def rollup_select(
    grain: int, dim: str, step: int, since: int | None, until: int, value: str | None
) -> Select[Any]:
    r = usage_rollup.c
    where = [r.grain == grain, r.dim == dim, r.start < until]
    if since is not None:
        where.append(r.start >= since)
    if value is not None:
        where.append(r.value == encode(value))
    bucket = r.start.op("/")(literal_column(str(int(step)))).label("b")
    return (
        select(bucket, r.value, *(func.sum(r[name]) for name in (*SUMS, *HIST)))
        .where(*where)
        .group_by(literal_column("b"), r.value)
    )


def _fold_rollup(rows: Iterable[Sequence[Any]], out: Buckets) -> None:
    n = len(SUMS)
    for row in rows:
        key = (int(row[0]), decode(row[1]))
        totals = Totals.of(row[2 : 2 + n], row[2 + n :])
        into = out.get(key)
        if into is None:
            out[key] = totals
        else:  # the same bucket from another piece
            into.merge(totals)


def pieces(since: int | None, until: int, max_grain: int, now: int) -> list[Piece]:
    """[since, until) as (grain, start, end) pieces, grain 0 for the rows; ``since`` None for
    the beginning of time."""
    grains = tuple(g for g in reversed(GRAINS) if g <= max_grain)
    minute_from = -(-(now - MINUTE_USABLE) // 60) * 60
    if since is None:
        top = grains[0] if grains else 0
        end = until // top * top if top else until
        return [(top, None, end), *_cover(end, until, grains[1:], minute_from)]
    return _cover(since, until, grains, minute_from)


def _cover(
    since: int, until: int, grains: tuple[int, ...], minute_from: int
) -> list[tuple[int, int | None, int]]:
    if since >= until:
        return []
    if not grains:
        return [(0, since, until)]
    grain, rest = grains[0], grains[1:]
    first = -(-since // grain) * grain
    last = until // grain * grain
    if first >= last:
        return _cover(since, until, rest, minute_from)
    middle: list[Piece] = [(grain, first, last)]
    if grain == 60 and first < minute_from:  # pruned minutes: read those rows
        middle = [(0, first, min(minute_from, last))]
        if minute_from < last:
            middle.append((60, minute_from, last))
    return [*_cover(since, first, rest, minute_from), *middle, *_cover(last, until, rest, minute_from)]


async def read(
    conn: AsyncConnection,
    dim: str,
    value: str | None,
    step: int,
    since: int | None,
    until: int,
    conditions: Sequence[ColumnElement[bool]],
    now: int,
) -> Buckets:
    """Totals per (bucket number ``start // step``, value of ``dim``) over [since, until).

    ``value`` keeps only that value of ``dim``; ``conditions`` (the same filter on the usage
    rows) apply to the rows read at the edges."""
    postgres = conn.dialect.name == "postgresql"
    max_grain = max((g for g in GRAINS if step % g == 0), default=0)
    out: Buckets = {}
    for grain, start, end in pieces(since, until, max_grain, now):
        if grain:
            rows = (await conn.execute(rollup_select(grain, dim, step, start, end, value))).all()
            _fold_rollup(rows, out)
        else:
            fold((await conn.execute(raw_select(dim, step, start, end, conditions, postgres))).all(), out)
    return out


__all__ = ["NO_STEP", "Buckets", "fold", "pieces", "raw_select", "read"]
